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
LINE_TOL = 16 / 255    #: colour spread of a uniform line (frame, margin) in a JPEG
SHRINK_PX = 3          #: a side of the blob's box drops at most this many uniform lines (frame, antialiasing)
PANEL_SHARE = 0.5      #: blobs at least this share of the largest are sections too (several panels)
LEVEL_TOL = 4 / 255    #: a flat fill stays within this of its level (exact in PNG, JPEG noise)
FLAT_STD = 2.5 / 255   #: largest 5x5 standard deviation of a flat fill (quiet live data varies more)
LEVEL_COLUMNS = 0.2    #: a level must fill runs in at least this share of the columns to be padding
MIN_SIDE = 160         #: smaller pictures are tiles (TGS: 101 px), taken whole: flat salt there is data


def _rgb(picture: np.ndarray) -> np.ndarray:
    """float32 (H, W, C) in [0, 1] of a grey (H, W) or colour (H, W, 3) picture, uint8 or float."""
    a = np.asarray(picture)
    a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 or a.max() > 1.0 else 1.0)
    return a[..., None] if a.ndim == 2 else a


def background_colours(rgb: np.ndarray) -> np.ndarray | None:
    """Colours (K, C), K <= 3, each of at least 10 % of the picture's border pixels, that together
    cover :data:`BORDER_SHARE` of them (margins; window chrome and a tool bar), or None."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    levels = np.round(border * 32).astype(np.int32)
    keys, counts = np.unique(levels, axis=0, return_counts=True)
    colours, covered = [], np.zeros(len(border), bool)
    for k in np.argsort(-counts)[:3]:
        if counts[k] < 0.1 * len(border):
            break
        colour = np.median(border[(levels == keys[k]).all(axis=1)], axis=0)
        colours.append(colour)
        covered |= np.abs(border - colour).max(axis=1) <= COLOUR_TOL
    if not colours or covered.mean() < BORDER_SHARE:
        return None
    return np.stack(colours)


def _uniform(line: np.ndarray) -> bool:
    """True when at least 85 % of a line's pixels (N, C) are within :data:`LINE_TOL` of its median
    colour: a frame line, a margin, a flat fill (JPEG ringing included); not a row or column of a
    section."""
    return bool((np.abs(line - np.median(line, axis=0)).max(axis=1) <= LINE_TOL).mean() >= 0.85)


def _frame_line(line: np.ndarray, colours: np.ndarray) -> bool:
    """A uniform line of another colour than the background: a frame (matplotlib's spines)."""
    if not _uniform(line):
        return False
    return bool((np.abs(np.median(line, axis=0) - colours).max(axis=1) > 4 * COLOUR_TOL).all())


def find_frame(rgb: np.ndarray, box: tuple[int, int, int, int], colours: np.ndarray,
               reach: float = 0.5) -> tuple[int, int, int, int]:
    """Each side of ``box`` moved to just inside the nearest frame line beyond it (within ``reach``
    of the picture), where there is one: a plot drawn in colours that match the margins (white
    zero amplitude in a red-white-blue map) still ends at its frame."""
    h, w = rgb.shape[:2]
    top, bottom, left, right = box
    for row in range(top - 1, max(-1, top - 1 - int(reach * h)), -1):
        if _frame_line(rgb[row, left:right], colours):
            top = row + 1
            break
    for row in range(bottom, min(h, bottom + int(reach * h))):
        if _frame_line(rgb[row, left:right], colours):
            bottom = row
            break
    for col in range(left - 1, max(-1, left - 1 - int(reach * w)), -1):
        if _frame_line(rgb[top:bottom, col], colours):
            left = col + 1
            break
    for col in range(right, min(w, right + int(reach * w))):
        if _frame_line(rgb[top:bottom, col], colours):
            right = col
            break
    return top, bottom, left, right


def grow_to_content(rgb: np.ndarray, box: tuple[int, int, int, int], reach: float = 0.15) -> tuple[int, int, int, int]:
    """Grow each side of a (top, bottom, left, right) box while the line beyond it has content
    (parts of the section that the opening lost), up to ``reach`` of the picture."""
    h, w = rgb.shape[:2]
    top, bottom, left, right = box
    for _ in range(int(reach * h)):
        if top > 0 and not _uniform(rgb[top - 1, left:right]):
            top -= 1
        else:
            break
    for _ in range(int(reach * h)):
        if bottom < h and not _uniform(rgb[bottom, left:right]):
            bottom += 1
        else:
            break
    for _ in range(int(reach * w)):
        if left > 0 and not _uniform(rgb[top:bottom, left - 1]):
            left -= 1
        else:
            break
    for _ in range(int(reach * w)):
        if right < w and not _uniform(rgb[top:bottom, right]):
            right += 1
        else:
            break
    return top, bottom, left, right


def shrink_uniform(rgb: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Each side of ``box`` drops up to :data:`SHRINK_PX` uniform lines of its own (the rest of a
    frame line, antialiasing)."""
    top, bottom, left, right = box
    for _ in range(SHRINK_PX):
        top += int(bottom - top > 2 and _uniform(rgb[top, left:right]))
        bottom -= int(bottom - top > 2 and _uniform(rgb[bottom - 1, left:right]))
        left += int(right - left > 2 and _uniform(rgb[top:bottom, left]))
        right -= int(right - left > 2 and _uniform(rgb[top:bottom, right - 1]))
    return top, bottom, left, right


def plotted_area(picture: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) rows/columns (end exclusive) of the plotted section in a picture.

    Args:
        picture: grey (H, W) or RGB (H, W, 3), uint8 or float in [0, 1].
    Returns the whole picture when its border has no background colours or nothing large
    differs from them.
    """
    rgb = _rgb(picture)
    h, w = rgb.shape[:2]
    whole = (0, h, 0, w)
    colours = background_colours(rgb)
    if colours is None:
        return whole
    fg = (np.abs(rgb[:, :, None, :] - colours[None, None]).max(axis=3) > COLOUR_TOL).all(axis=2).astype(np.uint8)
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
    box = shrink_uniform(rgb, grow_to_content(rgb, (y0, y1, x0, x1)))   # the blob keeps its frame lines
    return shrink_uniform(rgb, find_frame(rgb, box, colours))


def flat_fills(gray: np.ndarray, min_run: int = MIN_RUN) -> np.ndarray:
    """bool (H, W): padding, mutes and dead traces drawn at one grey level, ``gray`` in [0, 1].

    A fill level is a grey (to :data:`LEVEL_TOL`) that starts runs of at least
    ``max(min_run, H // 100)`` pixels at the top or the bottom of at least :data:`LEVEL_COLUMNS`
    of the columns (a fill colour is one value across the section; a flat salt body drifts over
    several and is not anchored there). The fill is every pixel within :data:`LEVEL_TOL` of a
    level whose 5x5 neighbourhood is flat (JPEG noise allowed), in the connected regions that touch
    the top or the bottom, or that run down half the section (dead traces).
    """
    g = np.asarray(gray, dtype=np.float32)
    h, w = g.shape
    out = np.zeros((h, w), bool)
    if h < 2 or w < 2:
        return out
    run = max(min_run, h // 100)
    top = np.cumprod(np.abs(g - g[:1]) <= LEVEL_TOL, axis=0).sum(axis=0) >= run
    bottom = np.cumprod((np.abs(g - g[-1:]) <= LEVEL_TOL)[::-1], axis=0).sum(axis=0) >= run
    starts = np.concatenate([g[0][top], g[-1][bottom]])
    if not starts.size:
        return out
    keys, counts = np.unique(np.round(starts * 255 / 4), return_counts=True)
    levels = keys[counts >= LEVEL_COLUMNS * w] * 4 / 255
    if not levels.size:
        return out
    mean = cv2.blur(g, (5, 5))
    flat = np.sqrt(np.maximum(cv2.blur(g * g, (5, 5)) - mean * mean, 0)) <= FLAT_STD
    fill = flat & (np.abs(g[..., None] - levels).min(axis=-1) <= LEVEL_TOL + 2 / 255)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fill.astype(np.uint8), connectivity=8)
    anchored = np.zeros(n, bool)
    anchored[np.unique(labels[0])] = anchored[np.unique(labels[-1])] = True
    anchored |= stats[:, cv2.CC_STAT_HEIGHT] >= h // 2
    anchored[0] = False
    return anchored[labels]


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
