"""Pictures of real SEG-Y sections as software and papers print them, with the truth of where data is.

The shared SEG-Y files (``../shared/data/seismic-real``) are rendered the way geologists receive
sections: a matplotlib figure (title, axis labels, ticks, colour bar, white margins) in grey or
red-white-blue with zero amplitude at the middle of the colour map, saved as PNG or JPEG at two
qualities, a screenshot-like crop (dark window chrome, a frame, a tool bar of text) and a plain
rendering at one pixel per sample. Each picture comes with its truth: the rectangle the section
was plotted into and the live samples (not dead, muted or padded) mapped onto the picture's
pixels. Only this generator is committed, never the pictures.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from geovision.nodata import section_no_data

STYLES = ("figure-grey", "figure-rwb", "figure-grey-jpeg90", "figure-rwb-jpeg60", "screenshot", "plain")


@dataclass
class Rendered:
    """A rendered section: ``data`` (encoded picture), ``box`` (top, bottom, left, right) of the
    plotted section in picture pixels (end exclusive), ``live`` bool (H, W) of the picture: pixels
    showing live samples (False outside the box and on no-data samples)."""

    data: bytes
    box: tuple[int, int, int, int]
    live: np.ndarray
    style: str


def read_section(path: Path) -> np.ndarray:
    """float32 (samples, traces) of every trace of a SEG-Y file, in file order (a 2-D line, or a
    3-D cut-out's traces side by side)."""
    import segyio

    with segyio.open(str(path), ignore_geometry=True) as f:
        return np.asarray(f.trace.raw[:], dtype=np.float32).T


def _clip(amplitudes: np.ndarray, live: np.ndarray) -> float:
    values = np.abs(amplitudes[live]) if live.any() else np.abs(amplitudes)
    return float(np.percentile(values, 99)) or 1.0


def _live_in_box(live: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    top, bottom, left, right = box
    out = np.zeros(shape, bool)
    rows = np.clip(((np.arange(bottom - top) + 0.5) * live.shape[0] / (bottom - top)).astype(int), 0, live.shape[0] - 1)
    cols = np.clip(((np.arange(right - left) + 0.5) * live.shape[1] / (right - left)).astype(int), 0, live.shape[1] - 1)
    out[top:bottom, left:right] = live[np.ix_(rows, cols)]
    return out


def render_figure(amplitudes: np.ndarray, cmap: str = "gray", fmt: str = "png", quality: int = 90,
                  title: str = "Section", size: tuple[float, float] = (8, 5)) -> Rendered:
    """A matplotlib figure of the section (``size`` inches at 100 dpi: 800x500 px by default) with
    its plotted rectangle as truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    live = ~section_no_data(amplitudes)
    clip = _clip(amplitudes, live)
    fig, ax = plt.subplots(figsize=size, dpi=100)
    shown = ax.imshow(amplitudes, cmap=cmap, vmin=-clip, vmax=clip, aspect="auto", interpolation="nearest")
    ax.set_title(title)
    ax.set_xlabel("Trace")
    ax.set_ylabel("Time (samples)")
    fig.colorbar(shown, ax=ax, label="Amplitude")
    fig.canvas.draw()
    width, height = fig.canvas.get_width_height()
    ext = ax.get_window_extent()
    box = (int(round(height - ext.y1)), int(round(height - ext.y0)), int(round(ext.x0)), int(round(ext.x1)))
    rgba = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, "JPEG" if fmt == "jpeg" else "PNG", **({"quality": quality} if fmt == "jpeg" else {}))
    return Rendered(buf.getvalue(), box, _live_in_box(live, box, (height, width)), f"figure-{cmap}-{fmt}")


def render_plain(amplitudes: np.ndarray) -> Rendered:
    """One pixel per sample, zero amplitude at mid-grey (128), clipped at the 99th percentile."""
    live = ~section_no_data(amplitudes)
    clip = _clip(amplitudes, live)
    grey = np.clip(np.round(128 + 127 * amplitudes / clip), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey, "L").save(buf, "PNG")
    return Rendered(buf.getvalue(), (0, grey.shape[0], 0, grey.shape[1]), live, "plain")


def render_screenshot(amplitudes: np.ndarray) -> Rendered:
    """The plain rendering inside dark window chrome: a 1-px light frame, a tool bar with text."""
    plain = render_plain(amplitudes)
    section = np.asarray(Image.open(io.BytesIO(plain.data)).convert("RGB"))
    h, w = section.shape[:2]
    bar, pad = 36, 24
    canvas = Image.new("RGB", (w + 2 * pad, h + bar + 2 * pad), (60, 63, 65))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, canvas.width, bar - 1], fill=(43, 43, 43))
    draw.text((8, 10), "File  View  Horizons  Faults  Inline 10117   zoom 100 %", fill=(220, 220, 220))
    draw.rectangle([pad - 1, bar + pad - 1, pad + w, bar + pad + h], outline=(200, 200, 200))
    canvas.paste(Image.fromarray(section), (pad, bar + pad))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    box = (bar + pad, bar + pad + h, pad, pad + w)
    return Rendered(buf.getvalue(), box, _live_in_box(plain.live, box, (canvas.height, canvas.width)), "screenshot")


def render(amplitudes: np.ndarray, style: str) -> Rendered:
    """One of :data:`STYLES`."""
    if style == "plain":
        return render_plain(amplitudes)
    if style == "screenshot":
        return render_screenshot(amplitudes)
    cmap = "seismic" if "rwb" in style else "gray"
    quality = int(style.rsplit("jpeg", 1)[1]) if "jpeg" in style else 90
    return render_figure(amplitudes, cmap, "jpeg" if "jpeg" in style else "png", quality)
