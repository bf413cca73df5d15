"""Domain check of the salt segmenter: how unlike its training tiles an input is.

The deepest features of the U-Net's encoder (the EfficientNet-Lite0 bottleneck, 320 channels at
4x4 for a 128 px input), averaged over space, are compared with those of the TGS training tiles
by the Mahalanobis distance to their mean under a shrunk covariance (Lee et al., "A simple unified
framework for detecting out-of-distribution samples and adversarial attacks", NeurIPS 2018;
Ledoit-Wolf style shrinkage towards the scaled identity). An image's score is the median over a
sample of its tiles; above the threshold fitted on the validation tiles (their 99th percentile)
it "looks unlike the training data". The statistics live in ``models/salt/domain.npz``
(``mean`` (C,), ``precision`` (C, C), ``threshold`` ()), written by :mod:`train.salt.domain`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

FILE = "domain.npz"
MAX_TILES = 24   #: tiles of one image scored (evenly spread over its tiles; cost: one encoder pass each)


def encoder_features(module: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """float32 (n, C) space-averaged deepest encoder features of model inputs (n, 1, S, S).

    ``module``: the served salt TorchScript module (``module.net.encoder`` returns the feature
    pyramid, the last level deepest). Raises AttributeError when the module has no such encoder."""
    encoder = module.net.encoder
    device = next(iter(module.parameters())).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            deepest = encoder(inputs[i:i + batch_size].to(device).float())[-1]
            out.append(deepest.float().mean(dim=(2, 3)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def fit(features: np.ndarray, shrinkage: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(mean (C,), precision (C, C)) float32 of training features (n, C): the inverse of
    ``(1 - shrinkage) * covariance + shrinkage * trace / C * I``."""
    mean = features.mean(axis=0)
    cov = np.cov(features - mean, rowvar=False)
    target = np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    precision = np.linalg.inv((1 - shrinkage) * cov + shrinkage * target)
    return mean.astype(np.float32), precision.astype(np.float32)


def distances(features: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """float32 (n,) Mahalanobis distances of features (n, C)."""
    d = features - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, precision, d), 0.0)).astype(np.float32)


def load(folder: str | Path) -> dict | None:
    """The statistics of ``folder/domain.npz`` as arrays, or None when the checkpoint has none."""
    path = Path(folder) / FILE
    if not path.exists():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in ("mean", "precision", "threshold")}


def score(module: torch.nn.Module, inputs: torch.Tensor, stats: dict) -> dict:
    """``{"score", "threshold", "unlike"}`` of one image's model inputs (n, 1, S, S): the median
    distance of up to :data:`MAX_TILES` evenly spread tiles, and whether it exceeds the threshold."""
    pick = np.unique(np.linspace(0, len(inputs) - 1, min(len(inputs), MAX_TILES)).round().astype(int))
    d = distances(encoder_features(module, inputs[pick]), stats["mean"], stats["precision"])
    value, threshold = float(np.median(d)), float(stats["threshold"])
    return {"score": round(value, 2), "threshold": round(threshold, 2), "unlike": bool(value > threshold)}
