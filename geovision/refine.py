"""Click-guided refinement of a salt mask, and the click simulation of interactive-segmentation
benchmarks (pure NumPy / SciPy / scikit-image, no Flask, no torch).

The refinement is a non-learned baseline: a random walker (Grady, "Random Walks for Image
Segmentation", TPAMI 2006; scikit-image's ``random_walker``) on the model's salt probability and
the grey levels, seeded by the clicks (disks of ``CLICK_RADIUS`` px) and by the pixels the model
is sure about (p above ``SURE`` salt, below ``1 - SURE`` not salt), except within ``CLEAR_RADIUS``
px of a click that says the opposite: there the user overrides the model. With no click the
answer is the model's own mask.

The click simulation is the protocol of RITM (Sofiiuk et al., "Reviving Iterative Training with
Mask Guidance for Interactive Segmentation", 2021) and of the interactive-segmentation
benchmarks before it: each next click goes to the pixel of the largest error region farthest from
that region's border, positive where salt was missed, negative where it was wrongly marked.
NoC@q is the number of clicks until IoU reaches q (at most ``max_clicks``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Most clicks one request may send.
MAX_CLICKS = 50
#: A click seeds a disk of this radius (px).
CLICK_RADIUS = 3
#: Model pixels with p >= SURE seed salt, p <= 1 - SURE seed not salt.
SURE = 0.9
#: No model seed of the opposite label within this distance (px) of a click.
CLEAR_RADIUS = 25
#: A click changes the mask within this many times its distance to the mask's border.
REACH = 2.5
#: Random walker edge weight (larger: stronger boundaries).
BETA = 400.0


class ClickError(ValueError):
    """Clicks that are not a list of ``{"x", "y", "salt"}`` inside the image (API code ``invalid_clicks``)."""


@dataclass(frozen=True)
class Click:
    x: int       #: column, 0 at the left
    y: int       #: row, 0 at the top
    salt: bool   #: True: "this is salt"; False: "this is not salt"


def parse_clicks(value: str | list | None, shape: tuple[int, int], max_clicks: int = MAX_CLICKS) -> list[Click]:
    """``[{"x": column, "y": row, "salt": true|false}, ...]`` (JSON text or a list) -> clicks inside an
    image of ``shape`` (H, W). Blank -> no click. Raises ClickError naming what is wrong."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ClickError(f"clicks must be JSON: {exc.msg}") from None
    if not isinstance(value, list):
        raise ClickError('clicks must be a JSON list of {"x": column, "y": row, "salt": true|false}')
    if len(value) > max_clicks:
        raise ClickError(f"{len(value)} clicks; at most {max_clicks}")
    height, width = shape
    clicks = []
    for i, c in enumerate(value):
        if not isinstance(c, dict) or not {"x", "y", "salt"} <= set(c):
            raise ClickError(f'click {i} must have "x", "y" and "salt"')
        x, y, salt = c["x"], c["y"], c["salt"]
        if isinstance(x, bool) or isinstance(y, bool) or not all(isinstance(v, (int, float)) for v in (x, y)):
            raise ClickError(f"click {i}: x and y must be pixel numbers")
        if not isinstance(salt, bool):
            raise ClickError(f"click {i}: salt must be true or false")
        if not (0 <= x < width and 0 <= y < height):
            raise ClickError(f"click {i} at ({x:g}, {y:g}) is outside the {width}x{height} image")
        clicks.append(Click(int(x), int(y), salt))
    return clicks


def _disk(shape: tuple[int, int], click: Click, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return (yy - click.y) ** 2 + (xx - click.x) ** 2 <= radius ** 2


def refine(probs: np.ndarray, gray: np.ndarray, clicks: list[Click], threshold: float,
           no_data: np.ndarray | None = None, beta: float | None = None) -> np.ndarray:
    """bool (H, W) salt mask after ``clicks`` on the model's ``probs`` float32 (H, W) in [0, 1] over
    ``gray`` (H, W) in [0, 1]; ``probs > threshold`` when there is no click. Clicked pixels always
    get their click's label; no data is never salt. Only a window of ``3 * CLEAR_RADIUS`` px around
    the clicks is redrawn; the window's border keeps the model's sure pixels as seeds, so the redrawn
    part meets the rest without a seam where the model was sure."""
    from skimage.segmentation import random_walker

    mask = probs > threshold
    if clicks:
        shape = probs.shape
        seeds = np.zeros(shape, np.int32)
        seeds[probs >= SURE] = 1
        seeds[probs <= 1 - SURE] = 2
        for c in clicks:                      # the user overrides the model near each click
            seeds[_disk(shape, c, CLEAR_RADIUS) & (seeds == (2 if c.salt else 1))] = 0
        for c in clicks:
            seeds[_disk(shape, c, CLICK_RADIUS)] = 1 if c.salt else 2
        # only a window around the clicks is redrawn (a whole section stays the model's elsewhere)
        ys, xs = [c.y for c in clicks], [c.x for c in clicks]
        margin = 3 * CLEAR_RADIUS
        top, bottom = max(0, min(ys) - margin), min(shape[0], max(ys) + margin + 1)
        left, right = max(0, min(xs) - margin), min(shape[1], max(xs) + margin + 1)
        window = (slice(top, bottom), slice(left, right))
        seeds = seeds[window]
        if (seeds == 1).any() and (seeds == 2).any():
            features = np.stack([probs[window].astype(np.float64), gray[window].astype(np.float64)], axis=-1)
            beta = BETA if beta is None else beta
            walked = np.zeros(shape, bool)
            walked[window] = random_walker(features, seeds, beta=beta, mode="cg_j", channel_axis=-1, tol=1e-3) == 1
        else:                                 # one label only: the window takes it
            walked = mask.copy()
            walked[window] = bool((seeds == 1).any())
        # each click changes only the walker's region that holds it: salt added around a "salt" click,
        # removed around a "not salt" one; the rest of the model's mask stays as it was
        # and only within REACH times the click's distance to the mask's border: a click near the
        # border corrects the border, a click far inside a missed (or false) body corrects the body
        model = mask.copy()
        for c in clicks:
            labels, _ = ndimage.label(walked if c.salt else ~walked)
            region = labels == labels[c.y, c.x] if labels[c.y, c.x] else _disk(shape, c, CLICK_RADIUS)
            other = ~model if c.salt else model        # the side the click says is wrong
            if other[c.y, c.x] and not other.all():
                depth = float(ndimage.distance_transform_edt(np.pad(other, 1, constant_values=True))[c.y + 1, c.x + 1])
                region &= _disk(shape, c, max(CLICK_RADIUS, REACH * depth))
            region |= _disk(shape, c, CLICK_RADIUS)
            mask = mask | region if c.salt else mask & ~region
    if no_data is not None:
        mask &= ~no_data
    return mask


#: Radius (px) of a click's disk in the click-conditioned model's input maps (RITM's disk encoding).
CLICK_MAP_RADIUS = 5


def click_maps(clicks: list[Click], shape: tuple[int, int], radius: float = CLICK_MAP_RADIUS) -> np.ndarray:
    """float32 (2, H, W) input maps of a click-conditioned network: channel 0 holds a disk of
    ``radius`` px (value 1) around every "salt" click, channel 1 around every "not salt" click
    (RITM's disk encoding, Sofiiuk et al. 2021). No click: two zero maps."""
    maps = np.zeros((2, *shape), np.float32)
    for c in clicks:
        maps[0 if c.salt else 1][_disk(shape, c, radius)] = 1.0
    return maps


def force_clicks(mask: np.ndarray, clicks: list[Click]) -> np.ndarray:
    """bool (H, W) copy of ``mask`` with a disk of ``CLICK_RADIUS`` px around each click set to its
    label: a clicked pixel always answers as the user said."""
    mask = mask.copy()
    for c in clicks:
        mask[_disk(mask.shape, c, CLICK_RADIUS)] = c.salt
    return mask


def clicked_tiles(origins: list[tuple[int, int]], clicks: list[Click], tile: int) -> list[int]:
    """Indices of the tiles (origins (y, x) of :func:`geovision.tiling.make_tiles`) holding a click."""
    return [i for i, (y, x) in enumerate(origins)
            if any(y <= c.y < y + tile and x <= c.x < x + tile for c in clicks)]


def click_model_rows(rows: np.ndarray, mask: np.ndarray, origins: list[tuple[int, int]], clicks: list[Click],
                     which: list[int], tile: int) -> np.ndarray:
    """float32 (k, 4, S, S) inputs of the click-conditioned model for the tiles ``which``: the grey
    row of each (``rows`` (n, 1, S, S), as made for the released model), the released ``mask``
    (bool (H, W)) cut like the grey and reflect-padded, and its salt / not-salt click maps
    (:func:`click_maps`, in the tile's coordinates, zero-padded)."""
    size = rows.shape[-1]
    before, after = (size - tile) // 2, size - tile - (size - tile) // 2
    canvas = np.zeros((max(mask.shape[0], tile), max(mask.shape[1], tile)), np.float32)
    canvas[:mask.shape[0], :mask.shape[1]] = mask
    out = np.zeros((len(which), 4, size, size), np.float32)
    for k, i in enumerate(which):
        y, x = origins[i]
        out[k, 0] = rows[i, 0]
        out[k, 1] = np.pad(canvas[y:y + tile, x:x + tile], ((before, after), (before, after)), mode="reflect")
        maps = click_maps([Click(c.x - x, c.y - y, c.salt) for c in clicks], (tile, tile))
        out[k, 2:] = np.pad(maps, ((0, 0), (before, after), (before, after)))
    return out


def refine_with_model(mask: np.ndarray, rows: np.ndarray, origins: list[tuple[int, int]],
                      canvas: tuple[int, int], clicks: list[Click], predict, tile: int, threshold: float,
                      overlap: int) -> np.ndarray:
    """bool (H, W) mask after ``clicks`` with a click-conditioned model (RITM's input encoding).

    Only the tiles that hold a click are recomputed: ``predict`` maps their
    :func:`click_model_rows` to salt probabilities (k, 1, S, S); those are blended over the
    recomputed tiles as the released answer is (Gaussian weights over the overlaps) and
    thresholded, and every pixel outside those tiles keeps the released ``mask``. The model sees the
    released mask of each tile it redraws, so away from the clicks it repeats it and the recomputed
    area meets the rest without a seam. Clicked pixels always take their click's label.
    """
    from .tiling import blend_tiles, crop_from_model

    if not clicks:
        return mask
    which = clicked_tiles(origins, clicks, tile)
    probs = predict(click_model_rows(rows, mask, origins, clicks, which, tile))
    chosen = [origins[i] for i in which]
    redrawn = blend_tiles(crop_from_model(np.asarray(probs, np.float32), tile), chosen, canvas, mask.shape,
                          overlap if len(origins) > 1 else 0)
    region = np.zeros(canvas, bool)
    for y, x in chosen:
        region[y:y + tile, x:x + tile] = True
    region = region[:mask.shape[0], :mask.shape[1]]
    return force_clicks(np.where(region, redrawn > threshold, mask), clicks)


def next_click(pred: np.ndarray, truth: np.ndarray) -> Click | None:
    """The benchmark click: at the pixel of the largest error region (missed salt or false salt,
    4-connected) farthest from the region's border; None when ``pred`` equals ``truth``."""
    best: tuple[int, Click] | None = None
    for salt, error in ((True, truth & ~pred), (False, pred & ~truth)):
        labels, n = ndimage.label(error)
        if not n:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        k = int(sizes.argmax()) + 1
        if best is not None and sizes[k - 1] <= best[0]:
            continue
        region = np.pad(labels == k, 1)       # the image border counts as a border
        distance = ndimage.distance_transform_edt(region)[1:-1, 1:-1]
        y, x = np.unravel_index(int(distance.argmax()), distance.shape)
        best = (int(sizes[k - 1]), Click(int(x), int(y), salt))
    return best[1] if best else None


def clicks_to_reach(ious: list[float], target: float, max_clicks: int = 20) -> int:
    """NoC: the first click count whose IoU reaches ``target`` (``ious[n]`` after n clicks), else ``max_clicks``."""
    for n, value in enumerate(ious[:max_clicks + 1]):
        if value >= target:
            return n
    return max_clicks
