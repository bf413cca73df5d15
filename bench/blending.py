"""Tile blending on sections: seams and quality on mosaics of untouched TGS tiles.

    python bench/blending.py [--model models/salt] [--mosaics 20] [--side 3] [--threads 2]

Untouched tiles (``train/splits/salt_untouched_ids.txt``, no choice was made on them) are laid
side by side into ``side x side`` mosaics (303x303 px for 3): a section whose truth is known.
Each mosaic goes through the served pre-processing (tiles of 101 px, reflect padding, the model's
own flip TTA) and is blended with the former linear ramp over a 26 px overlap and with the
Gaussian weights over a 50 px overlap (:mod:`geovision.tiling`). Printed per setting: tiles per
mosaic, the mean IoU with the truth at the checkpoint's threshold, and the seam contrast: the mean
absolute probability step across the sliding-window grid lines (tile borders of the blend, not of
the mosaic) divided by the mean step elsewhere (1.0: no seam shows). Single TGS tiles are one tile,
blended by neither: the TGS metric of the untouched split is unchanged by construction.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geovision import tiling
from geovision.checkpoint import load_checkpoint
from geovision.rle import rle_decode

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "tgs-salt"


def mosaics(n: int, side: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (gray float32 (H, W) in [0, 1], truth bool (H, W)) mosaics of untouched tiles."""
    import csv

    ids = (ROOT / "train" / "splits" / "salt_untouched_ids.txt").read_text().split()
    with open(DATA / "train.csv", newline="") as fh:
        rle = {r["id"]: r["rle_mask"] for r in csv.DictReader(fh)}
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        chosen = rng.choice(ids, size=side * side, replace=False)
        grays = [np.asarray(Image.open(DATA / "train" / "images" / f"{i}.png").convert("L"), np.float32) / 255
                 for i in chosen]
        masks = [rle_decode(rle[i] or "", (101, 101)).astype(bool) for i in chosen]
        rows = [np.hstack(grays[r * side:(r + 1) * side]) for r in range(side)]
        mrows = [np.hstack(masks[r * side:(r + 1) * side]) for r in range(side)]
        out.append((np.vstack(rows), np.vstack(mrows)))
    return out


def seam_contrast(probs: np.ndarray, origins: list[tuple[int, int]], tile: int = tiling.TILE) -> float:
    """Mean |step| of ``probs`` across the blend's tile borders over the mean |step| elsewhere; the
    columns within 3 px of the mosaic's own joins (multiples of 101, real edges) are left out of both."""
    dx = np.abs(np.diff(probs, axis=1))
    cols = np.arange(dx.shape[1])
    joins = np.min(np.abs(cols[:, None] + 0.5 - np.arange(tile, dx.shape[1] + 1, tile)[None, :] + 0.5), axis=1) <= 3
    border = np.zeros(dx.shape[1], bool)
    for x in {x for _, x in origins} | {x + tile - 1 for _, x in origins}:
        if 0 < x < dx.shape[1]:
            border[x - 1] = True
    border &= ~joins
    rest = dx[:, ~border & ~joins].mean()
    return float(dx[:, border].mean() / rest) if rest > 0 and border.any() else 1.0


def run(model: Path, n: int, side: int) -> None:
    ckpt = load_checkpoint(model, torch.device("cpu"))
    threshold = float(ckpt.meta.get("threshold", 0.5))
    print("| blend | overlap | tiles per mosaic | mean IoU | seam contrast |\n|---|---|---|---|---|")
    data = mosaics(n, side)
    for name, overlap, gaussian in (("linear ramp", 26, False), ("Gaussian", 50, True)):
        ious, seams, tiles = [], [], 0
        for gray, truth in data:
            inputs, origins, canvas = tiling.model_inputs(gray, ckpt.meta, overlap)
            with torch.inference_mode():
                out = ckpt.module(torch.from_numpy(inputs)).float().numpy()
            probs = tiling.blend_tiles(tiling.crop_from_model(out, tiling.TILE), origins, canvas, gray.shape,
                                       overlap, gaussian)
            mask = probs > threshold
            union = (mask | truth).sum()
            ious.append(1.0 if union == 0 else (mask & truth).sum() / union)
            seams.append(seam_contrast(probs, origins))
            tiles += len(origins)
        print(f"| {name} | {overlap} | {tiles / len(data):.0f} | {np.mean(ious):.4f} | {np.mean(seams):.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "salt"))
    parser.add_argument("--mosaics", type=int, default=20)
    parser.add_argument("--side", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run(Path(args.model), args.mosaics, args.side)
