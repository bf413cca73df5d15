"""Pictures for people: a section with labelled axes and a legend, probabilities with a colour bar.

Pure PIL and NumPy. An axis is ``{"label": "crossline", "first": 2148, "step": 4}``: the value of
pixel ``i`` along it is ``first + i * step`` (trace or line numbers across, time in ms or depth
in m downwards, as the SEG-Y headers give them; pixel rows and columns for pictures).
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LEFT, TOP, RIGHT, BOTTOM = 64, 40, 16, 44      #: margins in pixels around a picture up to 640 px wide
INK, GRID = (30, 30, 30), (120, 120, 120)
#: Perceptually ordered colours for probabilities 0..1 (viridis anchors, linearly interpolated).
VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32)


def nice_step(span: float, target: int = 6) -> float:
    """A round tick spacing (1, 2 or 5 times a power of ten) giving about ``target`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _ticks(axis: dict, pixels: int) -> list[tuple[int, str]]:
    """(pixel, label) of round values along an axis of ``pixels`` pixels."""
    first, step = float(axis["first"]), float(axis["step"]) or 1.0
    last = first + step * (pixels - 1)
    lo, hi = min(first, last), max(first, last)
    spacing = nice_step(hi - lo)
    value = math.ceil(lo / spacing) * spacing
    out = []
    while value <= hi + 1e-9:
        out.append((int(round((value - first) / step)), f"{value:g}"))
        value += spacing
    return out


def enlarge(picture: Image.Image, x_axis: dict, y_axis: dict, min_width: int = 320,
            max_factor: int = 8) -> tuple[Image.Image, dict, dict]:
    """A narrow picture (a few traces) scaled up by a whole factor (nearest neighbour, so samples
    stay sharp) to about ``min_width`` pixels, with its axes' steps scaled to match."""
    factor = min(max_factor, max(1, math.ceil(min_width / max(1, picture.width))))
    if factor == 1:
        return picture, x_axis, y_axis
    big = picture.resize((picture.width * factor, picture.height * factor), Image.Resampling.NEAREST)
    shrink = lambda axis: {**axis, "step": float(axis["step"]) / factor}  # noqa: E731
    return big, shrink(x_axis), shrink(y_axis)


def scale_for(width: int) -> float:
    """Text and margin scale of a figure ``width`` px wide: pages show figures at about 640 px, so
    a wider one is drawn with proportionally larger text (readable once scaled to the card)."""
    return max(1.0, width / 640)


def font(scale: float) -> ImageFont.ImageFont:
    """Pillow's bundled font at 11 px times ``scale``."""
    return ImageFont.load_default(size=round(11 * scale))


def with_axes(picture: Image.Image, x_axis: dict, y_axis: dict, title: str = "",
              legend: list[tuple[tuple[int, int, int], str]] | None = None) -> Image.Image:
    """``picture`` (RGB) framed with tick marks and labels on the top (x) and left (y) edges, a
    title, and a legend of (colour, text) swatches under it; a narrow picture is enlarged first."""
    picture, x_axis, y_axis = enlarge(picture, x_axis, y_axis)
    w, h = picture.size
    k = scale_for(w)
    text_font = font(k)
    left, top, right, bottom = (round(v * k) for v in (LEFT, TOP, RIGHT, BOTTOM))
    tick, gap, swatch = round(5 * k), round(7 * k), round(14 * k)
    out = Image.new("RGB", (left + max(w, 320) + right, top + h + bottom), (255, 255, 255))
    out.paste(picture.convert("RGB"), (left, top))
    draw = ImageDraw.Draw(out)
    draw.rectangle([left - 1, top - 1, left + w, top + h], outline=INK, width=max(1, round(k)))
    for px, text in _ticks(x_axis, w):
        draw.line([left + px, top - tick, left + px, top - 1], fill=INK, width=max(1, round(k)))
        draw.text((left + px, top - gap), text, fill=INK, font=text_font, anchor="ms")
    for py, text in _ticks(y_axis, h):
        draw.line([left - tick, top + py, left - 1, top + py], fill=INK, width=max(1, round(k)))
        draw.text((left - gap, top + py), text, fill=INK, font=text_font, anchor="rm")
    draw.text((left, round(4 * k)), f"{title}  ({x_axis['label']} across, {y_axis['label']} down)".strip(), fill=INK,
              font=text_font)
    x = left
    for colour, text in legend or []:
        draw.rectangle([x, top + h + swatch, x + swatch, top + h + 2 * swatch], fill=colour, outline=INK)
        draw.text((x + round(20 * k), top + h + round(21 * k)), text, fill=INK, font=text_font, anchor="lm")
        x += 2 * swatch + int(draw.textlength(text, font=text_font)) + swatch
    return out


def colourise(probs: np.ndarray, no_data: np.ndarray | None = None) -> Image.Image:
    """RGB picture of probabilities (H, W) in [0, 1] on the viridis scale; no data in light grey."""
    p = np.clip(np.nan_to_num(probs.astype(np.float32)), 0.0, 1.0) * (len(VIRIDIS) - 1)
    low = np.minimum(p.astype(int), len(VIRIDIS) - 2)
    frac = (p - low)[..., None]
    rgb = VIRIDIS[low] * (1 - frac) + VIRIDIS[low + 1] * frac
    if no_data is not None:
        rgb[no_data] = 215.0
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def colour_bar(height: int, width: int = 14) -> Image.Image:
    """A vertical viridis bar, 1 at the top, 0 at the bottom."""
    ramp = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None].repeat(width, axis=1)
    return colourise(ramp)


def probability_figure(probs: np.ndarray, no_data: np.ndarray | None, x_axis: dict, y_axis: dict,
                       threshold: float) -> Image.Image:
    """Probabilities with axes and a colour bar marked at 0, the threshold and 1."""
    picture, x_axis, y_axis = enlarge(colourise(probs, no_data), x_axis, y_axis)
    h = picture.height
    framed = with_axes(picture, x_axis, y_axis, title="salt probability",
                       legend=[((215, 215, 215), "no data")] if no_data is not None and no_data.any() else None)
    k = scale_for(picture.width)
    top = round(TOP * k)
    bar = colour_bar(max(h, 2), round(14 * k))
    out = Image.new("RGB", (framed.width + round(70 * k), framed.height), (255, 255, 255))
    out.paste(framed, (0, 0))
    out.paste(bar, (framed.width + round(8 * k), top))
    draw, text_font = ImageDraw.Draw(out), font(k)
    for value in (1.0, threshold, 0.0):
        y = top + int(round((1.0 - value) * (h - 1)))
        draw.line([framed.width + round(22 * k), y, framed.width + round(26 * k), y], fill=INK)
        draw.text((framed.width + round(29 * k), y), f"{value:.2f}" + (" cut" if value == threshold else ""), fill=INK,
                  font=text_font, anchor="lm")
    return out
