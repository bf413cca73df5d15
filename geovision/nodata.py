"""Where a seismic section holds no data (pure NumPy): dead traces, mutes, padding, constant borders.

Real surveys carry samples that are not measurements: dead traces (all zero), top mutes and
zero-amplitude water columns, zero padding below the record, and, in exported pictures,
constant bands or borders. A segmenter sees them as flat textures and may call them salt; here
they are found so that they are never salt, are left out of the coverage and of the amplitude
statistics, and are shown as "no data". Sections are (H, W) with samples (time or depth)
downwards and traces across, as :func:`app.salt.segy.read_slice` gives them.
"""
from __future__ import annotations

import numpy as np

MIN_RUN = 8   #: shortest run of equal samples along a trace that counts as no data


def runs_along_columns(flat: np.ndarray, min_run: int) -> np.ndarray:
    """bool (H, W): cells of ``flat`` (H, W) bool that lie in a vertical run of at least ``min_run`` True."""
    h, w = flat.shape
    padded = np.vstack([np.zeros((1, w), bool), flat, np.zeros((1, w), bool)]).astype(np.int8)
    change = np.diff(padded, axis=0)                    # +1 at a run's start, -1 after its end
    out = np.zeros_like(flat)
    for col in np.flatnonzero(flat.any(axis=0)):
        starts, ends = np.flatnonzero(change[:, col] == 1), np.flatnonzero(change[:, col] == -1)
        for s, e in zip(starts, ends):
            if e - s >= min_run:
                out[s:e, col] = True
    return out


def section_no_data(amplitudes: np.ndarray, min_run: int = MIN_RUN, rel_eps: float = 1e-6) -> np.ndarray:
    """bool (H, W): no-data samples of a SEG-Y section of amplitudes (any float dtype).

    A sample is no data when it is not finite, when its trace is dead (every sample at most
    ``rel_eps`` times the section's largest magnitude), or when it lies in a run of at least
    ``min_run`` such numerically-zero samples along its trace (mutes, zeroed water columns,
    padding below the record; a zero crossing of real data lasts one or two samples).
    """
    a = np.asarray(amplitudes, dtype=np.float64)
    finite = np.isfinite(a)
    magnitude = np.where(finite, np.abs(a), 0.0)
    peak = float(magnitude.max()) if magnitude.size else 0.0
    zero = magnitude <= rel_eps * peak
    dead = zero.all(axis=0)
    return _too_little_left(~finite | dead[None, :] | runs_along_columns(zero, min_run), min_run)


def image_no_data(gray: np.ndarray, min_run: int = MIN_RUN) -> np.ndarray:
    """bool (H, W): no-data pixels of a section picture, grey levels in [0, 1] (float) or 0..255.

    Only black or white (the padding colours of exported sections) counts, since salt itself is
    drawn flat: whole black or white columns (dead traces) and rows (padding bands), and runs of at
    least ``max(min_run, H // 20)`` black or white pixels that start at the top or end at the
    bottom of a column (mutes, padding below the record). An image of one value is all no data.
    """
    g = np.asarray(gray, dtype=np.float32)
    h, w = g.shape
    if g.size and g.min() == g.max():
        return np.ones((h, w), bool)
    full = 255.0 if g.max() > 1.0 else 1.0
    pad = (g == 0.0) | (g == full)
    out = np.zeros((h, w), bool)
    out[:, (pad & (g == g[:1])).all(axis=0)] = True
    out[(pad & (g == g[:, :1])).all(axis=1), :] = True
    run = max(min_run, h // 20)
    top = np.cumprod(pad & (g == g[:1]), axis=0).astype(bool)       # leading black/white pixels
    bottom = np.cumprod((pad & (g == g[-1:]))[::-1], axis=0)[::-1].astype(bool)
    out |= top & (top.sum(axis=0) >= run)[None, :]
    out |= bottom & (bottom.sum(axis=0) >= run)[None, :]
    return _too_little_left(out, min_run)


def _too_little_left(no_data: np.ndarray, min_run: int) -> np.ndarray:
    """All no data when fewer than ``max(min_run**2, 1 %)`` pixels are live: a few stray pixels
    in a padded picture are no section to segment."""
    live = int((~no_data).sum())
    if live and live < max(min_run * min_run, 0.01 * no_data.size):
        return np.ones_like(no_data)
    return no_data


def fill_no_data(gray: np.ndarray, no_data: np.ndarray) -> np.ndarray:
    """A copy of ``gray`` (H, W) float whose no-data pixels hold the live data mirrored across the
    nearest live pixel, so that the border between live data and no data is no model input edge.

    A flat fill (the median, as before) put a featureless band beside the live data, and the
    segmenter, trained on reflect-padded tiles where flat means salt, drew a thin salt band along
    it. Mirroring continues the texture as the training tiles' reflect padding does. Each no-data
    pixel x takes the value at ``2 p - x``, p its nearest live pixel (Euclidean distance
    transform), or at p when that point is outside the picture or no data itself; with nothing
    live the picture is 0.5 (zero amplitude).
    """
    from scipy import ndimage

    out = np.array(gray, dtype=np.float32, copy=True)
    if not no_data.any():
        return out
    if no_data.all():
        out[:] = 0.5
        return out
    _, (py, px) = ndimage.distance_transform_edt(no_data, return_indices=True)
    ys, xs = np.nonzero(no_data)
    ny, nx = py[ys, xs], px[ys, xs]
    my, mx = 2 * ny - ys, 2 * nx - xs
    h, w = out.shape
    inside = (my >= 0) & (my < h) & (mx >= 0) & (mx < w)
    ok = inside.copy()
    ok[inside] = ~no_data[my[inside], mx[inside]]
    out[ys, xs] = np.where(ok, out[np.clip(my, 0, h - 1), np.clip(mx, 0, w - 1)], out[ny, nx])
    return out


#: salt components lying this close to no data (pixels) ...
EDGE_BAND_PX = 20
#: ... with at least this share of their pixels are edge artefacts (:func:`drop_edge_slivers`)
EDGE_SHARE = 0.8


def drop_edge_slivers(mask: np.ndarray, no_data: np.ndarray, band: int = EDGE_BAND_PX,
                      share: float = EDGE_SHARE) -> np.ndarray:
    """``mask`` without the salt components that hug the border of the no-data region.

    The segmenter was trained on TGS tiles, which never hold a water column, a mute or padding:
    the first strong reflection under such a region (a sea floor, the top of a mute) comes out as a
    thin salt band along the border whatever fills the no-data pixels (mirrored data, the edge
    value or mid-grey all tried on the shared Volve line: 1.5, 1.2 and 0.5 % salt, all of it within
    20 px of no data). A salt body is thick: a connected component (8-neighbour) with at least
    ``share`` of its pixels within ``band`` px of no data is dropped; others are kept whole.

    Args:
        mask: bool (H, W) salt; no_data: bool (H, W). Returns a new bool (H, W) mask.
    """
    from scipy import ndimage

    if not mask.any() or not no_data.any():
        return mask
    near = ndimage.distance_transform_edt(~no_data) <= band
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    near_share = ndimage.mean(near, labels, index=np.arange(1, n + 1))
    drop = np.concatenate([[False], np.asarray(near_share) >= share])
    return mask & ~drop[labels]
