"""Tiling and blending for the salt segmenter (pure NumPy/PIL, no Flask).

Any image size is handled by cutting it into overlapping 101x101 tiles (the TGS tile
size the model was trained on), reflect-padding each to the model input size,
and blending the tile probabilities with a Gaussian weight centred on each tile (the sliding-window
inference of nnU-Net, Isensee et al., Nature Methods 2021: sigma 1/8 of the tile, half-tile
overlap), so that no tile border shows as a seam in the probabilities or the mask.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

TILE = 101     #: TGS tile edge in pixels
OVERLAP = 50   #: pixels shared by neighbouring tiles of a large section (stride 51: about half a tile)
SIGMA_SCALE = 1 / 8   #: the Gaussian blend weight's sigma, as a share of the tile edge (nnU-Net's)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``[0, length)`` (last one flush)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def tile_count(height: int, width: int, overlap: int = OVERLAP, tile: int = TILE) -> int:
    """Tiles :func:`make_tiles` cuts from a (height, width) image."""
    stride = tile - overlap
    return len(tile_starts(max(height, tile), tile, stride)) * len(tile_starts(max(width, tile), tile, stride))


def blend_weights(tile: int, ramp: int, gaussian: bool = True) -> np.ndarray:
    """(tile, tile) float32 weights; all 1 when ``ramp`` is 0 (a single tile). ``gaussian``: a
    Gaussian of sigma ``SIGMA_SCALE * tile`` centred on the tile, 1 at the centre, floored at 1e-3
    (nnU-Net's); else 1 inside, falling linearly over ``ramp`` pixels to the edges (the former blend)."""
    if ramp <= 0:
        return np.ones((tile, tile), np.float32)
    if gaussian:
        r = np.arange(tile, dtype=np.float32) - (tile - 1) / 2
        w1 = np.exp(-0.5 * (r / (SIGMA_SCALE * tile)) ** 2)
        return np.maximum(np.outer(w1, w1), 1e-3).astype(np.float32)
    edge = np.minimum(np.arange(tile), np.arange(tile)[::-1]).astype(np.float32)
    w1 = np.clip((edge + 1) / (ramp + 1), 0.0, 1.0)
    return np.outer(w1, w1).astype(np.float32)


def make_tiles(gray: np.ndarray, tile: int = TILE,
               overlap: int = OVERLAP) -> tuple[np.ndarray, list[tuple[int, int]], tuple[int, int]]:
    """Cut a grayscale image into overlapping tiles.

    Args:
        gray: float32 (H, W) in [0, 1], any size >= 1x1.
        tile: tile edge in pixels; overlap: pixels shared by neighbouring tiles.
    Returns:
        ``tiles`` float32 (n, tile, tile); ``origins`` [(y, x)] of each tile in the
        (possibly padded) canvas; ``canvas`` (Hc, Wc). Images smaller than a tile are
        padded (reflect, or edge when too small to reflect) up to the tile size.
    """
    h, w = gray.shape
    ph, pw = max(0, tile - h), max(0, tile - w)
    if ph or pw:
        mode = "reflect" if h > 1 and w > 1 and ph < h and pw < w else "edge"
        gray = np.pad(gray, ((0, ph), (0, pw)), mode=mode)
    hc, wc = gray.shape
    stride = tile - overlap
    origins = [(y, x) for y in tile_starts(hc, tile, stride) for x in tile_starts(wc, tile, stride)]
    tiles = np.stack([gray[y:y + tile, x:x + tile] for y, x in origins]).astype(np.float32)
    return tiles, origins, (hc, wc)


def blend_tiles(probs: np.ndarray, origins: list[tuple[int, int]], canvas: tuple[int, int],
                out_shape: tuple[int, int], overlap: int = OVERLAP, gaussian: bool = True) -> np.ndarray:
    """Weighted average of tile probabilities (n, tile, tile) into a float32 (H, W) map
    (:func:`blend_weights`)."""
    tile = probs.shape[-1]
    weights = blend_weights(tile, overlap if len(origins) > 1 else 0, gaussian)
    acc = np.zeros(canvas, np.float32)
    norm = np.zeros(canvas, np.float32)
    for p, (y, x) in zip(probs, origins):
        acc[y:y + tile, x:x + tile] += p * weights
        norm[y:y + tile, x:x + tile] += weights
    h, w = out_shape
    return (acc / np.maximum(norm, 1e-6))[:h, :w]


def pad_for_model(tiles: np.ndarray, size: int, mean: float, std: float) -> np.ndarray:
    """Normalise tiles (n, t, t) and reflect-pad them to float32 (n, 1, size, size)."""
    t = tiles.shape[-1]
    before = (size - t) // 2
    after = size - t - before
    x = (tiles - mean) / std
    x = np.pad(x, ((0, 0), (before, after), (before, after)), mode="reflect")
    return x[:, None].astype(np.float32)


def crop_from_model(probs: np.ndarray, tile: int) -> np.ndarray:
    """Central (n, tile, tile) region of model outputs (n, 1, size, size)."""
    size = probs.shape[-1]
    before = (size - tile) // 2
    return probs[:, 0, before:before + tile, before:before + tile]


def model_inputs(gray: np.ndarray, meta: dict, overlap: int) -> tuple[np.ndarray, list[tuple[int, int]], tuple[int, int]]:
    """Tiles of ``gray`` (H, W) ready for the checkpoint described by ``meta.json``.

    Returns float32 inputs (n, 1, S, S), tile origins and the canvas size (see :func:`make_tiles`).
    """
    tiles, origins, canvas = make_tiles(gray, int(meta.get("tile_size", TILE)), overlap)
    norm = meta["normalization"]
    return pad_for_model(tiles, int(meta["input_shape"][-1]), norm["mean"][0], norm["std"][0]), origins, canvas


def probabilities(outputs: np.ndarray, origins: list[tuple[int, int]], canvas: tuple[int, int],
                  shape: tuple[int, int], meta: dict, overlap: int) -> np.ndarray:
    """Blend model outputs (n, 1, S, S) into salt probabilities float32 (H, W)."""
    tile = int(meta.get("tile_size", TILE))
    return blend_tiles(crop_from_model(outputs, tile), origins, canvas, shape, overlap)


def threshold_mask(probs: np.ndarray, n_tiles: int, meta: dict, threshold: float) -> np.ndarray:
    """bool (H, W) ``probs > threshold``; a single-tile image whose mask has fewer than
    ``meta["min_salt_pixels"]`` pixels is emptied (the TGS empty-mask rule favours no salt over a speck)."""
    mask = probs > threshold
    if n_tiles == 1 and mask.sum() < int(meta.get("min_salt_pixels", 0)):
        mask[:] = False
    return mask


#: mean salt probability inside the mask at or above which the salt is "high" / "medium" confidence
CONFIDENCE_LEVELS = (0.85, 0.7)


def salt_confidence(probs: np.ndarray, mask: np.ndarray, live: np.ndarray) -> dict:
    """How sure the segmenter is of the salt it drew.

    Args:
        probs: float (H, W) salt probabilities; mask: bool (H, W) the answered salt; live: bool
            (H, W) pixels with data.
    Returns ``{"mean_probability"`` (mean of ``probs`` inside the mask, None without salt),
    ``"uncertain_fraction"`` (share of the live pixels with a probability in 0.3..0.7: where the
    answer would change with the threshold), ``"level"`` (``high``, ``medium`` or ``low`` by
    :data:`CONFIDENCE_LEVELS` on the mean probability; ``none`` without salt)}``.
    """
    inside = probs[mask & live]
    live_probs = probs[live]
    uncertain = float(((live_probs >= 0.3) & (live_probs <= 0.7)).mean()) if live_probs.size else 0.0
    if not inside.size:
        return {"mean_probability": None, "uncertain_fraction": round(uncertain, 4), "level": "none"}
    mean = float(inside.mean())
    level = "high" if mean >= CONFIDENCE_LEVELS[0] else "medium" if mean >= CONFIDENCE_LEVELS[1] else "low"
    return {"mean_probability": round(mean, 4), "uncertain_fraction": round(uncertain, 4), "level": level}


def mask_from_outputs(outputs: np.ndarray, origins: list[tuple[int, int]], canvas: tuple[int, int],
                      shape: tuple[int, int], meta: dict, threshold: float, overlap: int) -> np.ndarray:
    """Blend model outputs (n, 1, S, S) into a bool mask (H, W) cut at ``threshold``
    (:func:`probabilities`, then :func:`threshold_mask`)."""
    return threshold_mask(probabilities(outputs, origins, canvas, shape, meta, overlap), len(origins), meta, threshold)


def overlay(gray: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 64, 32),
            alpha: float = 0.45, no_data: np.ndarray | None = None) -> Image.Image:
    """RGB picture of ``gray`` (H, W, [0, 1]) with ``mask`` (H, W, bool) tinted and outlined, and
    the ``no_data`` pixels (H, W, bool) drawn as grey diagonal hatching."""
    base = np.repeat((gray * 255).astype(np.uint8)[..., None], 3, axis=2).astype(np.float32)
    if no_data is not None and no_data.any():
        yy, xx = np.indices(no_data.shape)
        hatch = ((yy + xx) % 8) < 2
        base[no_data] = np.where(hatch[no_data, None], 96.0, 176.0)
    tint = np.array(color, np.float32)
    m = mask.astype(bool)
    base[m] = base[m] * (1 - alpha) + tint * alpha
    edge = m & ~(_shift_and(m))
    base[edge] = tint
    return Image.fromarray(base.clip(0, 255).astype(np.uint8), "RGB")


def _shift_and(m: np.ndarray) -> np.ndarray:
    """Erosion by a 3x3 cross (pixels whose 4 neighbours are all set)."""
    p = np.pad(m, 1, mode="edge")
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def mask_image(mask: np.ndarray) -> Image.Image:
    """8-bit PNG-ready mask: 255 = salt, 0 = no salt (the TGS convention)."""
    return Image.fromarray(mask.astype(np.uint8) * 255, "L")


def probability_overlay(gray: np.ndarray, probs: np.ndarray, threshold: float, no_data: np.ndarray | None = None,
                        color: tuple[int, int, int] = (255, 64, 32), alpha: float = 0.6) -> Image.Image:
    """RGB picture of ``gray`` (H, W, [0, 1]) tinted by salt probability ``probs`` (H, W, [0, 1]: the
    tint's opacity is ``alpha * p``), the ``p > threshold`` body outlined, no data hatched (as
    :func:`overlay`). For a volume's slices, where the probability itself is the answer."""
    p = np.clip(np.nan_to_num(probs.astype(np.float32)), 0.0, 1.0)
    picture = np.asarray(overlay(gray, np.zeros(gray.shape, bool), no_data=no_data), np.float32)
    weight = (alpha * p)[..., None]
    picture = picture * (1 - weight) + np.array(color, np.float32) * weight
    body = p > threshold
    picture[body & ~_shift_and(body)] = color
    return Image.fromarray(picture.clip(0, 255).astype(np.uint8), "RGB")
