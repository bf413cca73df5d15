"""Pseudo-labels for salt fine-tuning: a trained segmenter labels the unlabelled test tiles and
the most confident of them join the training set.

Pseudo-labelling of the test images was part of most top TGS Salt Identification solutions
(e.g. the 1st and 4th place write-ups); here it is a fine-tuning stage that starts from a
trained checkpoint (``--init-from``) and never touches the validation split, which comes from
``train/``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from geovision.checkpoint import is_torchscript

from .evaluate import apply_postprocessing, predict_tiles
from .pretext import load_unlabelled

log = logging.getLogger(__name__)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """U-Net state dict of a run checkpoint (its EMA weights) or of an exported TorchScript model.

    Args:
        path: ``RUN_DIR/last.pt`` (a dict with ``"ema"``, as written by :func:`train.salt.loop.train_salt`)
            or ``models/salt/model.pt`` (TorchScript of :class:`train.salt.model.SaltPredictor`).
    Raises:
        ValueError: if the file is neither, or is an exported ensemble (several U-Nets).
    """
    if is_torchscript(path):
        scripted = torch.jit.load(str(path), map_location="cpu")
        state = {k.removeprefix("net."): v for k, v in scripted.state_dict().items() if k.startswith("net.")}
        if any(k.startswith("nets.") for k in state):
            raise ValueError(f"{path}: an ensemble export holds several U-Nets; start from one of its members "
                             "(a run's last.pt or a single-model export)")
        return state
    state = torch.load(path, map_location="cpu")
    if not isinstance(state, dict) or "ema" not in state:
        raise ValueError(f"{path}: neither a TorchScript salt model nor a run checkpoint with 'ema'")
    return {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}


def tile_uncertainty(probs: np.ndarray, salts: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per-tile uncertainty in [0, 1] of post-processed predictions (0 = fully confident).

    Args:
        probs: float (N, H, W) salt probabilities; salts: float (N,) salt/no-salt head
            probabilities; masks: bool (N, H, W) the post-processed masks.
    Returns:
        float (N,): for a tile predicted empty, twice the head's salt probability capped at 1;
        otherwise the larger of the head's doubt ``2 (1 - salt)`` and the mean pixel doubt
        ``2 min(p, 1 - p)``.
    """
    empty = ~masks.reshape(len(masks), -1).any(1)
    pixel = (2 * np.minimum(probs, 1 - probs)).reshape(len(probs), -1).mean(1)
    head_salty = np.clip(2 * (1 - salts), 0, 1)
    head_empty = np.clip(2 * salts, 0, 1)
    return np.where(empty, head_empty, np.maximum(pixel, head_salty))


def select_confident(uncertainty: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Indices (sorted) of the ``keep_fraction`` least uncertain tiles (at least one)."""
    if not 0 < keep_fraction <= 1:
        raise ValueError("keep_fraction must be in (0, 1]")
    k = max(1, int(round(len(uncertainty) * keep_fraction)))
    return np.sort(np.argsort(uncertainty, kind="stable")[:k])


def make_pseudo_labels(model: torch.nn.Module, folder: Path, mean: float, std: float, device: torch.device,
                       post: dict, keep_fraction: float, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Label the tiles of ``folder`` with ``model`` and keep the most confident.

    Args:
        model: the U-Net (mask logits, salt logits); folder: PNG tiles 101x101;
        mean, std: input normalisation; post: ``threshold``, ``empty_threshold``,
        ``min_salt_pixels`` of the model (tuned on validation).
    Returns:
        (uint8 images (K, 101, 101), bool masks (K, 101, 101)).
    """
    images = load_unlabelled(folder, limit)
    probs, salts = predict_tiles(model, images, mean, std, device)
    masks = apply_postprocessing(probs, salts, post["threshold"], post["empty_threshold"],
                                 post.get("min_salt_pixels", 0))
    keep = select_confident(tile_uncertainty(probs, salts, masks), keep_fraction)
    log.info("pseudo-labels: kept %d of %d unlabelled tiles (%.0f%% with salt)", len(keep), len(images),
             100 * masks[keep].reshape(len(keep), -1).any(1).mean())
    return images[keep], masks[keep]
