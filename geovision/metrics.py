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


#: Kaggle's label for "this individual is not in the gallery" (humpback whale identification).
NEW_WHALE = "new_whale"


def average_precision_at_5(truth: str, predictions: list[str]) -> float:
    """Kaggle MAP@5 term of one query: 1/rank of the first correct prediction in the top 5, else 0.

    Source: https://www.kaggle.com/c/humpback-whale-identification/overview/evaluation
    (each image has one true label, so precision at the first hit is 1/rank).
    """
    for rank, label in enumerate(predictions[:5], start=1):
        if label == truth:
            return 1.0 / rank
    return 0.0


def map_at_5(truths: list[str], predictions: list[list[str]]) -> float:
    """Mean average precision at 5 over queries (``truths`` aligned with ``predictions``)."""
    if len(truths) != len(predictions):
        raise ValueError("truths and predictions must have the same length")
    return float(np.mean([average_precision_at_5(t, p) for t, p in zip(truths, predictions)])) if truths else 0.0


def insert_new_whale(ranked: list[tuple[str, float]], threshold: float, k: int = 5) -> list[tuple[str, float]]:
    """Top ``k`` predictions with ``new_whale`` inserted where the score first falls below ``threshold``.

    Args:
        ranked: (individual, similarity score) pairs, best first, without ``new_whale``.
        threshold: similarity under which a candidate is less likely than "a new individual".
    Returns:
        ``k`` (label, score) pairs when at least ``k - 1`` individuals are ranked; ``new_whale``
        carries ``threshold`` as its score. It is left out only when the top ``k`` candidates all
        reach the threshold, and appended when fewer than ``k`` individuals are known.
    """
    out: list[tuple[str, float]] = []
    for label, score in ranked:
        if score < threshold and all(lab != NEW_WHALE for lab, _ in out):
            out.append((NEW_WHALE, threshold))
        out.append((label, score))
    if len(out) < k and all(lab != NEW_WHALE for lab, _ in out):
        out.append((NEW_WHALE, threshold))
    return out[:k]


def best_threshold(grid, score_at) -> tuple[float, float]:
    """The value of ``grid`` maximising ``score_at(value)`` (e.g. MAP@5 with ``new_whale`` decided
    at that threshold); ties keep the first (grids run upwards: the lowest). The one threshold search
    of the whale trainers and studies. Returns ``(threshold, score)``; ValueError for an empty grid."""
    best_t, best = None, -np.inf
    for t in grid:
        score = float(score_at(float(t)))
        if score > best + 1e-12:
            best_t, best = float(t), score
    if best_t is None:
        raise ValueError("an empty threshold grid")
    return best_t, best
