"""Evaluation metrics (NumPy only, shared by training and the server tests)."""
from __future__ import annotations

import numpy as np

#: IoU thresholds of the TGS Salt Identification metric: 0.50, 0.55, ..., 0.95.
TGS_IOU_THRESHOLDS = np.arange(0.5, 1.0, 0.05)


def iou(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Intersection over union of two binary masks of the same shape (1.0 when both empty)."""
    t, p = y_true.astype(bool), y_pred.astype(bool)
    union = np.logical_or(t, p).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(t, p).sum() / union)


def tgs_image_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """TGS score of one image: mean over thresholds 0.50..0.95 of ``iou > t``.

    An image whose true mask is empty scores 1 when the prediction is empty, else 0
    (the competition's empty-mask rule).
    Source: https://www.kaggle.com/c/tgs-salt-identification-challenge/overview/evaluation
    """
    if not y_true.any():
        return float(not y_pred.any())
    return float(np.mean(iou(y_true, y_pred) > TGS_IOU_THRESHOLDS))


def tgs_metric(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean TGS image score over a batch of masks of shape (N, H, W)."""
    if y_true.shape != y_pred.shape or y_true.ndim != 3:
        raise ValueError(f"expected two (N, H, W) arrays, got {y_true.shape} and {y_pred.shape}")
    return float(np.mean([tgs_image_score(t, p) for t, p in zip(y_true, y_pred)]))
