"""Where the seismic is in a picture of a section (pure NumPy + OpenCV): figure furniture and flat fills.

Geologists upload figures from reports, screenshots of interpretation software and scans: the
section sits inside white (or coloured) margins with a title, axis labels, ticks, a frame and a
colour bar, and may carry padding or mutes drawn at any grey level (mid-grey is zero amplitude in
the usual display). None of that is data, so none of it may be called salt. Two steps:

1. :func:`plotted_area`, the plotted image: when the picture's border is one background colour
   (margins), the pixels that differ from it are opened with a disc wider than text strokes,
   ticks and frame lines, and the largest remaining blob (blobs of at least half its size too:
   several panels) is the section; its bounding rectangle is the plotted area. A picture without
   one border colour (a crop of the section itself, a TGS tile) is all plotted area.
2. :func:`flat_fills`, inside it: padding, mutes and dead traces drawn at one level: runs of one
   grey level (within JPEG noise) from the top or to the bottom of a column, and whole columns or
   rows of it, at a level that fills such runs across a good part of the section (a padding band
   or a mute spans many traces; a flat salt body in a tile is neither exactly one level nor
   anchored at the top or bottom across the section).

:func:`picture_no_data` combines both with :func:`geovision.nodata.image_no_data` (black and
white bands). Measured in ``tests/test_dataarea.py`` on figures rendered from the shared SEG-Y
files (matplotlib, grey and red-white-blue, JPEG) and on the TGS validation tiles.
"""
from __future__ import annotations

import cv2
import numpy as np

from .nodata import MIN_RUN, image_no_data

BORDER_SHARE = 0.9     #: share of the border pixels of one colour that makes it a background (margins)
COLOUR_TOL = 6 / 255   #: colour distance (max over channels) within which a pixel is background
OPEN_PX = 9            #: opening disc (px): wider than text strokes, ticks and frame lines
PANEL_SHARE = 0.5      #: blobs at least this share of the largest are sections too (several panels)
LEVEL_TOL = 1.5 / 255  #: a flat fill stays within this of its level (exact in PNG, DC-only JPEG blocks)
LEVEL_COLUMNS = 0.2    #: a level must fill runs in at least this share of the columns to be padding
MIN_SIDE = 160         #: smaller pictures are tiles (TGS: 101 px), taken whole: flat salt there is data


def _rgb(picture: np.ndarray) -> np.ndarray:
    """float32 (H, W, C) in [0, 1] of a grey (H, W) or colour (H, W, 3) picture, uint8 or float."""
    a = np.asarray(picture)
    a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 or a.max() > 1.0 else 1.0)
    return a[..., None] if a.ndim == 2 else a


def background_colour(rgb: np.ndarray) -> np.ndarray | None:
    """The colour (C,) of at least :data:`BORDER_SHARE` of the picture's border pixels, or None."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    levels = np.round(border * 32).astype(np.int32)
    keys, counts = np.unique(levels, axis=0, return_counts=True)
    best = keys[counts.argmax()]
    near = np.abs(border - np.median(border[(levels == best).all(axis=1)], axis=0)).max(axis=1) <= COLOUR_TOL
    if near.mean() < BORDER_SHARE:
        return None
    return np.median(border[near], axis=0)


def plotted_area(picture: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) rows/columns (end exclusive) of the plotted section in a picture.

    Args:
        picture: grey (H, W) or RGB (H, W, 3), uint8 or float in [0, 1].
    Returns the whole picture when its border has no single background colour or nothing large
    differs from the background.
    """
    rgb = _rgb(picture)
    h, w = rgb.shape[:2]
    whole = (0, h, 0, w)
    bg = background_colour(rgb)
    if bg is None:
        return whole
    fg = (np.abs(rgb - bg).max(axis=2) > COLOUR_TOL).astype(np.uint8)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (OPEN_PX, OPEN_PX))
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, disc)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return whole
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= PANEL_SHARE * areas.max())
    x0 = int(stats[keep, cv2.CC_STAT_LEFT].min())
    y0 = int(stats[keep, cv2.CC_STAT_TOP].min())
    x1 = int((stats[keep, cv2.CC_STAT_LEFT] + stats[keep, cv2.CC_STAT_WIDTH]).max())
    y1 = int((stats[keep, cv2.CC_STAT_TOP] + stats[keep, cv2.CC_STAT_HEIGHT]).max())
    return y0, y1, x0, x1


def flat_fills(gray: np.ndarray, min_run: int = MIN_RUN) -> np.ndarray:
    """bool (H, W): padding, mutes and dead traces drawn at one grey level, ``gray`` in [0, 1].

    A pixel is a flat fill when it lies in a run of pixels within :data:`LEVEL_TOL` of the run's
    first value that starts at the top or ends at the bottom of its column and is at least
    ``max(min_run, H // 20)`` long, or in a whole column or row of one level, and when that level
    (to 1/64) fills such top/bottom runs in at least :data:`LEVEL_COLUMNS` of the columns.
    """
    g = np.asarray(gray, dtype=np.float32)
    h, w = g.shape
    out = np.zeros((h, w), bool)
    if h < 2 or w < 2:
        return out
    run = max(min_run, h // 20)
    top = np.cumprod(np.abs(g - g[:1]) <= LEVEL_TOL, axis=0).astype(bool)
    bottom = np.cumprod((np.abs(g - g[-1:]) <= LEVEL_TOL)[::-1], axis=0)[::-1].astype(bool)
    top &= (top.sum(axis=0) >= run)[None, :]
    bottom &= (bottom.sum(axis=0) >= run)[None, :]
    starts = np.concatenate([g[0][top.any(axis=0)], g[-1][bottom.any(axis=0)]])
    if not starts.size:
        return out
    keys, counts = np.unique(np.round(starts * 255), return_counts=True)
    levels = keys[counts >= LEVEL_COLUMNS * w] / 255
    if not levels.size:
        return out
    def at_level(values: np.ndarray) -> np.ndarray:
        return (np.abs(values[..., None] - levels) <= 0.5 / 255).any(axis=-1)

    out |= top & at_level(g[:1])
    out |= bottom & at_level(g[-1:])
    flat_cols = (np.abs(g - g[:1]) <= LEVEL_TOL).all(axis=0) & at_level(g[0])
    flat_rows = (np.abs(g - g[:, :1]) <= LEVEL_TOL).all(axis=1) & at_level(g[:, 0])
    out[:, flat_cols] = True
    out[flat_rows, :] = True
    return out


def picture_no_data(picture: np.ndarray, gray: np.ndarray, min_run: int = MIN_RUN) -> tuple[np.ndarray, tuple]:
    """(bool (H, W) no-data mask, plotted area (top, bottom, left, right)) of a section picture.

    Args:
        picture: the decoded picture, grey (H, W) or RGB (H, W, 3) (uint8 or float in [0, 1]).
        gray: its grey levels (H, W) in [0, 1] (what the model sees).
    Everything outside the plotted area is no data; inside, black/white bands
    (:func:`geovision.nodata.image_no_data`) and flat fills of any level (:func:`flat_fills`).
    A picture with a side under :data:`MIN_SIDE` is a tile (the TGS convention, where a flat salt
    body is data): only the black/white rules apply.
    """
    g = np.asarray(gray, dtype=np.float32)
    if min(g.shape) < MIN_SIDE:
        return image_no_data(g, min_run), (0, g.shape[0], 0, g.shape[1])
    top, bottom, left, right = plotted_area(picture)
    out = np.ones(g.shape, bool)
    inner = g[top:bottom, left:right]
    if inner.size:
        out[top:bottom, left:right] = image_no_data(inner, min_run) | flat_fills(inner, min_run)
    return out, (top, bottom, left, right)
