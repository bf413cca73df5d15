"""Small helpers shared by the trainers: device choice and the learning-rate schedule."""
from __future__ import annotations

import math

import torch


def select_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; other names as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR factor: linear warm-up over ``warmup`` steps, then cosine decay to 1 % at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
