"""Salt evaluation pieces shared by training, pseudo-labelling and snapshot combination:
flip-TTA prediction of tiles, the post-processing rules and their threshold search, the fixed split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from geovision.metrics import tgs_metric

from . import data as sd


def predict_tiles(model: torch.nn.Module, images: np.ndarray, mean: float, std: float,
                  device: torch.device, batch_size: int = 64, bf16: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Flip-TTA salt probabilities (N, 101, 101) and salt/no-salt probabilities (N,) of uint8 tiles
    (N, 101, 101); ``bf16`` runs the forward passes under bfloat16 autocast."""
    model.eval()
    probs, salts = [], []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(images[i:i + batch_size]).float().div(255).unsqueeze(1)
            x = sd.pad_tiles((x - mean) / std).to(device)
            m1, c1 = model(x)
            m2, c2 = model(x.flip(-1))
            p = (torch.sigmoid(m1) + torch.sigmoid(m2).flip(-1)) / 2
            probs.append(sd.crop_tiles(p)[:, 0].float().cpu().numpy())
            salts.append(((torch.sigmoid(c1) + torch.sigmoid(c2)) / 2)[:, 0].float().cpu().numpy())
    return np.concatenate(probs), np.concatenate(salts)


def apply_postprocessing(probs: np.ndarray, salts: np.ndarray, threshold: float, empty_threshold: float,
                         min_salt_pixels: int) -> np.ndarray:
    """Binary masks (N, H, W): ``probs > threshold``, emptied where the salt/no-salt head is below
    ``empty_threshold`` or fewer than ``min_salt_pixels`` pixels remain (TGS empty-mask rule)."""
    masks = (probs > threshold) & (salts >= empty_threshold)[:, None, None]
    masks[masks.reshape(len(masks), -1).sum(1) < min_salt_pixels] = False
    return masks


def tune_thresholds(probs: np.ndarray, salts: np.ndarray, masks: np.ndarray) -> dict:
    """Grid-search the mask threshold, empty-tile threshold and smallest mask for the TGS metric."""
    best = {"tgs_metric": -1.0}
    for empty_threshold in (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        for threshold in (0.3, 0.4, 0.5, 0.6, 0.7):
            for min_salt_pixels in (0, 10, 25, 50, 100):
                score = tgs_metric(masks, apply_postprocessing(probs, salts, threshold, empty_threshold, min_salt_pixels))
                if score > best["tgs_metric"]:
                    best = {"tgs_metric": score, "threshold": threshold, "empty_threshold": empty_threshold,
                            "min_salt_pixels": min_salt_pixels}
    return best


def load_split(data: str, dry_run: bool = False, holdout: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train masks, validation images, validation masks) of the fixed split.

    A dry run uses the first 16 tiles, the last 4 for validation; a first real run writes
    the split file. ``holdout`` names a file of ids (one per line, e.g.
    ``train/splits/salt_untouched_ids.txt``) removed from both parts: tiles no choice of the run sees.
    """
    ids = sd.read_ids(Path(data))
    if holdout:
        held = set(sd.read_split(Path(holdout)))
        ids = [i for i in ids if i not in held]
    if dry_run:
        ids = ids[:16]
    images, masks = sd.load_tiles(Path(data), ids)
    if dry_run:
        val_ids = set(ids[12:])
    elif sd.SPLIT_FILE.exists():
        val_ids = set(sd.read_split())
    else:
        val_ids = set(sd.make_split(ids, masks))
        sd.SPLIT_FILE.write_text("\n".join(sorted(val_ids)) + "\n")
    is_val = np.array([i in val_ids for i in ids])
    return images[~is_val], masks[~is_val], images[is_val], masks[is_val]
