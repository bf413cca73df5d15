"""Pre-processing of rock photos for the 28x28 RGB models (pure, no Flask)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..imaging import to_gray


def rgb_thumbnail(image: Image.Image, size: int) -> np.ndarray:
    """uint8 (size, size, 3) RGB thumbnail (bilinear resize, as in training).

    16-bit and float images go through :func:`app.imaging.to_gray` (grey RGB); other
    modes through ``convert("RGB")``.
    """
    if image.mode.startswith("I") or image.mode == "F":
        image = Image.fromarray((to_gray(image) * 255).round().astype(np.uint8), "L")
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def normalise(thumbnail: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, H, W), scaled to [0, 1] then standardised per channel."""
    x = thumbnail.astype(np.float32).transpose(2, 0, 1) / 255.0
    return ((x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]).astype(np.float32)
