"""Export of a trained salt U-Net: TorchScript ``model.pt`` and its ``meta.json``."""
from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from geovision.checkpoint import write_meta
from geovision.device import select_device

from ..common.pretrained import pretrained_weights
from ..common.provenance import git_commit
from . import data as sd
from .config import SaltTrainConfig
from .evaluate import load_split, predict_tiles, tune_thresholds
from .model import SaltPredictor, build_unet, describe, export_torchscript

log = logging.getLogger(__name__)
ARCHITECTURE = ("U-Net (segmentation_models_pytorch) with a from-scratch ResNet-18 encoder "
                "(depth 4), decoder (128, 64, 32, 16), salt/no-salt head; hflip TTA inside")


def retune_and_export(cfg: SaltTrainConfig) -> dict:
    """Re-tune the post-processing of ``run_dir/last.pt``'s EMA weights on the validation split
    and export them (used when the grid of a finished run was too narrow)."""
    device = select_device(cfg.device)
    state = torch.load(Path(cfg.run_dir) / "last.pt", map_location=device)
    net = build_unet(**{**cfg.layout, "pretrained": False})   # the run's weights replace ImageNet's
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    ema.load_state_dict(state["ema"])
    tr_x, _, va_x, va_y = load_split(cfg.data, cfg.dry_run, cfg.holdout)
    mean, std = cfg.normalization or (float(tr_x.mean() / 255), float(tr_x.std() / 255))
    probs, salts = predict_tiles(ema.module.to(device), va_x, mean, std, device)
    best = {**tune_thresholds(probs, salts, va_y), "epoch": state["epoch"] + 1}
    log.info("re-tuned epoch %d: %s", best["epoch"], best)
    export_salt(ema.module, cfg, best, mean, std, len(tr_x), len(va_x), state.get("minutes", 0.0), device)
    return json.loads((Path(cfg.output) / "meta.json").read_text())


def export_salt(net: torch.nn.Module, cfg: SaltTrainConfig, best: dict, mean: float, std: float,
                n_train: int, n_val: int, minutes: float, device: torch.device, extra: dict | None = None) -> dict:
    """Write ``model.pt`` (TorchScript, CPU) and ``meta.json`` for the best weights so far.

    Args:
        net: the U-Net (or an ensemble module with the same outputs); best: the tuned
            ``tgs_metric``, ``threshold``, ``empty_threshold``, ``min_salt_pixels`` and ``epoch``;
        mean, std: input normalisation on the [0, 1] scale; extra: top-level keys merged into
            ``meta.json`` (a dict value is merged into the existing dict of that key).
    Returns the written meta dict (schema: :func:`geovision.checkpoint.validate_meta`).
    """
    out_dir = Path(cfg.output)
    net = copy.deepcopy(net).cpu().float().to(memory_format=torch.contiguous_format)
    export_torchscript(SaltPredictor(net, best["empty_threshold"]), str(out_dir / "model.pt"))
    meta = {
        "task": "salt",
        "name": f"salt-unet-{cfg.encoder.removeprefix('tf_').replace('_', '-')}",
        "version": time.strftime("%Y%m%d", time.gmtime()) + ("-dryrun" if cfg.dry_run else ""),
        "architecture": describe(**cfg.layout),
        "pretrained": pretrained_weights(cfg.layout["encoder"]) if cfg.layout["pretrained"] else None,
        "input_shape": [1, sd.PADDED, sd.PADDED],
        "tile_size": sd.TILE,
        "padding": {"mode": "reflect", "before": sd.PAD_BEFORE, "after": sd.PAD_AFTER},
        "normalization": {"scale": 1 / 255, "mean": [round(mean, 6)], "std": [round(std, 6)]},
        "output": "salt probability (N, 1, 128, 128); zero where the salt/no-salt head says empty",
        "threshold": best["threshold"],
        "empty_threshold": best["empty_threshold"],
        "min_salt_pixels": best.get("min_salt_pixels", 0),
        "metrics": {"val_tgs_metric": round(best["tgs_metric"], 4), "val_tiles": n_val,
                    "epoch": best["epoch"]},
        "data": {"dataset": "TGS Salt Identification (Kaggle 2018), train/",
                 "train_tiles": n_train, "val_tiles": n_val,
                 "val_split": "train/splits/salt_val_ids.txt",
                 **({"holdout": cfg.holdout} if cfg.holdout else {})},   # ids no stage of the run saw
        "training": {"epochs": cfg.epochs, "lovasz_from": cfg.lovasz_from, "batch_size": cfg.batch_size,
                     "lr": cfg.lr, "minutes": round(minutes, 1), "device": str(device),
                     "threads": torch.get_num_threads(), "torch": torch.__version__},
        "command": cfg.command,
        "git_commit": git_commit(),
    }
    for key, value in (extra or {}).items():
        meta[key] = {**meta[key], **value} if isinstance(meta.get(key), dict) and isinstance(value, dict) else value
    write_meta(out_dir, meta)
    log.info("exported %s (val TGS %.4f)", out_dir / "model.pt", best["tgs_metric"])
    return meta
