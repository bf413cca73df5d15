"""Salt training step time on this CPU: float32 vs bfloat16 autocast, NCHW vs channels-last.

    python bench/salt_train_speed.py [--threads 2] [--batch-size 32] [--steps 4]

Times one optimiser step (forward, Lovász hinge + BCE, backward, AdamW) of the released U-Net
architecture on random 128x128 batches, and the batch augmentation (``train.salt.data.augment``)
that runs beside it, to tell whether loading and augmenting need their own worker. Prints a
Markdown table (seconds per step, tiles per second, minutes per epoch of 3,241 tiles).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from train.salt import data as sd
from train.salt.losses import lovasz_hinge
from train.salt.model import build_unet


def step_seconds(net, opt, x, y, channels_last: bool, bf16: bool, steps: int) -> float:
    net = net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            mask_logits, _ = net(x)
        loss = lovasz_hinge(mask_logits.float(), y) + 0.1 * F.binary_cross_entropy_with_logits(mask_logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - started)
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build_unet()
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    x = torch.randn(args.batch_size, 1, 128, 128)
    y = (torch.rand(args.batch_size, 1, 128, 128) > 0.5).float()
    tiles, masks = torch.rand(args.batch_size, 1, 101, 101), (torch.rand(args.batch_size, 1, 101, 101) > 0.5).float()
    gen = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for _ in range(10):
        sd.augment(tiles, masks, gen)
    augment_s = (time.perf_counter() - started) / 10
    steps_per_epoch = 3241 // args.batch_size
    print(f"threads {args.threads}, batch {args.batch_size}; augmentation of one batch: {augment_s * 1e3:.0f} ms")
    print("| setting | s/step | tiles/s | min/epoch (3,241 tiles) |\n|---|---|---|---|")
    for channels_last in (False, True):
        for bf16 in (False, True):
            seconds = step_seconds(net, opt, x, y, channels_last, bf16, args.steps)
            name = f"{'channels-last' if channels_last else 'NCHW'} + {'bf16 autocast' if bf16 else 'float32'}"
            print(f"| {name} | {seconds:.2f} | {args.batch_size / seconds:.1f} | {steps_per_epoch * seconds / 60:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
