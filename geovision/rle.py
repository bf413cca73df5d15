"""Kaggle run-length encoding of binary masks (TGS Salt Identification convention).

Pixels are numbered from top to bottom, then left to right (column-major, Fortran
order), starting at 1; the encoding is space-separated ``start length`` pairs and
the empty string for an empty mask.
Source: https://www.kaggle.com/c/tgs-salt-identification-challenge/overview/evaluation
"""
from __future__ import annotations

import numpy as np


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask (any dtype, non-zero = foreground) as a Kaggle ``rle_mask``.

    Args:
        mask: array of shape (H, W).
    Returns:
        ``"start length start length ..."`` (1-based, column-major); ``""`` when empty.
    Raises:
        ValueError: if ``mask`` is not 2-D.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    pixels = np.concatenate([[0], (mask.T.reshape(-1) != 0).astype(np.int8), [0]])
    changes = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    starts, ends = changes[0::2], changes[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends))


def rle_decode(rle_mask: str | float | None, shape: tuple[int, int]) -> np.ndarray:
    """Decode a Kaggle ``rle_mask`` into a uint8 mask of ``shape`` (H, W), values 0/1.

    ``None``, NaN and ``""`` decode to an empty mask.
    Raises:
        ValueError: on an odd number of values or runs outside the image.
    """
    height, width = shape
    flat = np.zeros(height * width, dtype=np.uint8)
    if isinstance(rle_mask, str) and rle_mask.strip():
        values = np.asarray(rle_mask.split(), dtype=np.int64)
        if values.size % 2:
            raise ValueError("rle_mask must hold start/length pairs")
        for start, length in zip(values[0::2], values[1::2]):
            if start < 1 or length < 0 or start - 1 + length > flat.size:
                raise ValueError(f"run {start} {length} lies outside a {shape} image")
            flat[start - 1:start - 1 + length] = 1
    return flat.reshape(width, height).T.copy()
