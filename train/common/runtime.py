"""Run set-up and learning-rate schedule shared by the trainers."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from geovision.device import select_device


def start_run(seed: int, threads: int, device: str, *folders: str) -> torch.device:
    """Seed torch, set its CPU threads (0: PyTorch's default), create ``folders`` (the run and
    output folders) and return the device (``auto``: cuda when available)."""
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    for folder in folders:
        Path(folder).mkdir(parents=True, exist_ok=True)
    return select_device(device)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR factor: linear warm-up over ``warmup`` steps, then cosine decay to 1 % at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
