"""Amplitudes back from a colour-coded section picture (red-white-blue and similar colour scales).

Pure NumPy. A seismic section printed with a diverging colour scale keeps the sign of the
amplitude in the hue (red one way, blue the other) and puts zero at white: ITU-R 601 luma
makes strong troughs and strong peaks the same dark grey and loses the section. Each pixel is
mapped instead to its position along the colour scale it was printed with: the nearest point
of the scale's path through RGB (the scales are matplotlib's piecewise-linear ``seismic`` and
``bwr``; their blue end is the low amplitude, as in matplotlib's and most interpretation
packages' red-white-blue). A picture is treated as colour-coded when a good share of its
pixels is saturated and lies close to one of the scales; otherwise :func:`amplitude_gray`
answers ``None`` and the caller keeps luma (grey scales, photographs, other colour maps).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Colour scales as RGB anchors in [0, 1] from low to high amplitude (matplotlib's definitions).
SCALES = {
    "seismic": [(0.0, 0.0, 0.3), (0.0, 0.0, 1.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0), (0.5, 0.0, 0.0)],
    "bwr": [(0.0, 0.0, 1.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0)],
}
MIN_CHROMA = 0.25          #: max - min channel above which a pixel counts as coloured
MIN_COLOURED_SHARE = 0.05  #: share of coloured pixels from which a picture may be colour-coded
MAX_DISTANCE = 0.2         #: median RGB distance of the coloured pixels to the scale (0..sqrt(3));
#: JPEG's chroma subsampling moves colours: 0.02 in a PNG figure, 0.15 in the same figure as JPEG quality 60
LEVELS = 32                #: lookup-table cells per channel


def _path(anchors: list[tuple[float, float, float]], samples: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(points (S, 3), position 0..1 of each point) evenly spaced along the piecewise-linear scale."""
    a = np.asarray(anchors, np.float32)
    t = np.linspace(0.0, 1.0, samples, dtype=np.float32) * (len(a) - 1)
    low = np.minimum(t.astype(int), len(a) - 2)
    frac = (t - low)[:, None]
    return a[low] * (1 - frac) + a[low + 1] * frac, t / (len(a) - 1)


@lru_cache(maxsize=len(SCALES))
def distance_to(name: str) -> np.ndarray:
    """float32 (LEVELS, LEVELS, LEVELS): each quantised RGB cell's distance to the nearest point of
    the scale ``name`` (what :func:`detect` judges a picture by)."""
    points, _ = _path(SCALES[name])
    centres = (np.arange(LEVELS, dtype=np.float32) + 0.5) / LEVELS
    grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    d2 = (grid ** 2).sum(1)[:, None] + (points ** 2).sum(1)[None, :] - 2.0 * grid @ points.T
    return np.sqrt(np.maximum(d2.min(1), 0.0)).reshape(LEVELS, LEVELS, LEVELS)


def _cells(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = np.minimum(rgb.astype(np.int32) * LEVELS // 256, LEVELS - 1)
    return q[..., 0], q[..., 1], q[..., 2]


def detect(rgb: np.ndarray) -> str | None:
    """The name of the colour scale an RGB picture uint8 (H, W, 3) was printed with, or None."""
    chroma = (rgb.max(-1).astype(np.int16) - rgb.min(-1)) / 255.0
    coloured = chroma > MIN_CHROMA
    if coloured.mean() < MIN_COLOURED_SHARE:
        return None
    cells = tuple(c[coloured] for c in _cells(rgb))
    distances = {name: distance_to(name)[cells] for name in SCALES}
    name = min(distances, key=lambda n: float(distances[n].mean()))   # the scales share their middle: ends decide
    return name if float(np.median(distances[name])) <= MAX_DISTANCE else None


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)   # ITU-R 601, as PIL's convert("L")


def amplitude_gray(rgb: np.ndarray) -> tuple[np.ndarray, str] | None:
    """(grey levels float32 (H, W) in [0, 1], scale name) of a colour-coded section picture, or None.

    The grey level is the pixel's position along the detected scale: 0 its low (blue) end,
    0.5 white (zero amplitude), 1 its high (red) end, as a grey display shows the same section
    (zero at mid-grey). The side of white comes from the hue (red above blue or not) and the
    distance from white from the luma, which falls monotonically from white to either end of
    these scales: JPEG keeps luma at full resolution but the hue at half, so the section's detail
    survives JPEG. Labels and frames get a level too; the data-area search keeps them out."""
    name = detect(rgb)
    if name is None:
        return None
    points, position = _path(SCALES[name])
    luma = _luma(points)
    low, high = position <= 0.5, position >= 0.5
    y = _luma(rgb.astype(np.float32) / 255.0)
    # np.interp needs increasing x: luma rises towards white on the low half, falls on the high half
    on_low = np.interp(y, luma[low], position[low])
    on_high = np.interp(y, luma[high][::-1], position[high][::-1])
    red = rgb[..., 0].astype(np.int16) > rgb[..., 2]
    return np.where(red, on_high, on_low).astype(np.float32), name
