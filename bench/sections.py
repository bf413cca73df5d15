"""Time to segment whole sections of growing size with the committed salt checkpoint.

    python bench/sections.py [--sizes 0.1 0.25 0.5 1 2] [--batch 32] [--device cpu]

A section of N megapixels (a square of smooth random texture) goes through the serving
pipeline's pure functions and the TorchScript model: tiling (101x101, 50 px overlap, Gaussian blend),
reflect-padding, batched forward passes, blending. Prints seconds and seconds per megapixel
for each size; a constant time per megapixel means the cost grows linearly with the area.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from geovision import tiling as proc
from geovision.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def section(megapixels: float, seed: int = 0) -> np.ndarray:
    side = int(round((megapixels * 1e6) ** 0.5))
    rng = np.random.default_rng(seed)
    coarse = rng.random((side // 16 + 2, side // 16 + 2)).astype(np.float32)
    return np.kron(coarse, np.ones((16, 16), np.float32))[:side, :side]


def segment(gray: np.ndarray, ckpt, batch: int, bf16: bool) -> np.ndarray:
    inputs, origins, canvas = proc.model_inputs(gray, ckpt.meta, 26)
    outs = []
    with torch.inference_mode(), torch.autocast(ckpt.device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(inputs), batch):
            x = torch.from_numpy(inputs[i:i + batch]).to(ckpt.device)
            x = x.contiguous(memory_format=torch.channels_last) if bf16 else x
            outs.append(ckpt.module(x).float().cpu().numpy())
    return proc.mask_from_outputs(np.concatenate(outs), origins, canvas, gray.shape, ckpt.meta,
                                  ckpt.meta["threshold"], 26)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0, 2.0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--float32", action="store_true", help="float32 even when the checkpoint allows bfloat16")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "SECTIONS.md",
                        help="markdown file for the table (empty string: print only)")
    args = parser.parse_args()
    ckpt = load_checkpoint(ROOT / "models" / "salt", torch.device(args.device))
    # the served default on CPU (CPU_BF16=auto): bfloat16 + channels-last for a checkpoint validated so
    bf16 = args.device == "cpu" and bool(ckpt.meta.get("runtime", {}).get("cpu_bf16")) and not args.float32
    segment(section(0.05), ckpt, args.batch, bf16)  # warm-up
    precision = "bfloat16 autocast + channels-last" if bf16 else "float32"
    lines = [f"salt sections on {args.device} (threads {torch.get_num_threads()}), batch {args.batch}, {precision}", "",
             "| megapixels | tiles | seconds | seconds per megapixel |", "|---|---|---|---|"]
    print("\n".join(lines))
    for mp in args.sizes:
        gray = section(mp)
        started = time.perf_counter()
        segment(gray, ckpt, args.batch, bf16)
        seconds = time.perf_counter() - started
        n_tiles = proc.tile_count(*gray.shape)
        lines.append(f"| {gray.size / 1e6:.2f} | {n_tiles} | {seconds:.2f} | {seconds / (gray.size / 1e6):.2f} |")
        print(lines[-1], flush=True)
    if str(args.out):
        args.out.write_text("# Whole sections: time per megapixel\n\n`python bench/sections.py` (model "
                            f"{ckpt.name} {ckpt.version}, {platform.processor() or platform.machine()}, "
                            f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).\n"
                            "Tiles of 101x101 overlapping by 50 px; a constant time per megapixel means "
                            "the cost grows linearly with the area.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
