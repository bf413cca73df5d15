"""Segmentation losses.

Lovász hinge: Berman, Rannen Triki, Blaschko, "The Lovász-Softmax loss: A tractable
surrogate for the optimization of the intersection-over-union measure in neural
networks", CVPR 2018 (https://arxiv.org/abs/1705.08790).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_hinge(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-image Lovász hinge loss, averaged over the batch.

    Args:
        logits: float tensor (N, H, W) or (N, 1, H, W), raw scores.
        labels: same shape, binary {0, 1}.
    Returns:
        Scalar tensor.
    """
    losses = []
    for logit, label in zip(logits.reshape(logits.shape[0], -1), labels.reshape(labels.shape[0], -1)):
        signs = 2.0 * label - 1.0
        errors = 1.0 - logit * signs
        errors_sorted, perm = torch.sort(errors, descending=True)
        grad = _lovasz_grad(label[perm])
        # elu + 1 instead of relu: the smooth variant used by the TGS winners.
        losses.append(torch.dot(F.elu(errors_sorted) + 1.0, grad))
    return torch.stack(losses).mean()
