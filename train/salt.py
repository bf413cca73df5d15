"""Train the TGS salt segmenter from scratch and export it to ``models/salt``.

Recipe (after the TGS Salt Identification top solutions): tiles reflect-padded
101 -> 128, flips and mild affine/brightness augmentation, BCE (+ salt/no-salt head)
then Lovász hinge, weight EMA, horizontal-flip TTA, and thresholds for the mask and
the empty-tile head tuned on the fixed validation split.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from . import salt_data as sd
from .losses import lovasz_hinge
from .metrics import tgs_metric
from .pretext import pretrain_encoder, subset_fraction
from .provenance import git_commit
from .runtime import select_device, warmup_cosine
from .salt_model import SaltPredictor, build_unet, export_torchscript
from .salt_pseudo import load_weights, make_pseudo_labels

log = logging.getLogger(__name__)


@dataclass
class SaltTrainConfig:
    """Arguments of :func:`train_salt` (also written to ``args.json`` of the run)."""

    data: str
    output: str = "models/salt"
    run_dir: str = "runs/salt"
    epochs: int = 36
    lovasz_from: int = 16          #: first epoch (0-based) trained with the Lovász hinge
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    ema_decay: float = 0.995
    eval_every: int = 2
    seed: int = 42
    threads: int = 0               #: torch CPU threads, 0 = PyTorch default
    device: str = "auto"
    dry_run: bool = False          #: a few steps on a few tiles, then export
    resume: bool = False
    retune: bool = False           #: only re-tune post-processing of RUN_DIR/last.pt and export
    pretrain: str = "none"         #: self-supervised encoder pretraining: none, rotation or jigsaw
    pretrain_steps: int = 600      #: pretext-task steps (batch 32) on the unlabelled tiles
    unlabelled: str = ""           #: folder of unlabelled tiles (default DATA/test/images)
    label_fraction: float = 1.0    #: train on this fraction of the labelled tiles (stratified, seeded)
    max_steps: int = 0             #: stop after this many optimiser steps (0 = epochs x steps per epoch)
    init_from: str = ""            #: start from these weights (run last.pt or exported model.pt), fresh schedule
    pseudo_keep: float = 0.0       #: pseudo-label the unlabelled tiles, keep this most confident fraction
    pseudo_fraction: float = 0.5   #: pseudo-labelled tiles per epoch, as a fraction of the labelled ones
    command: str = ""



def predict_tiles(model: torch.nn.Module, images: np.ndarray, mean: float, std: float,
                  device: torch.device, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Flip-TTA salt probabilities (N, 101, 101) and salt/no-salt probabilities (N,)."""
    model.eval()
    probs, salts = [], []
    with torch.inference_mode():
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



def _load_split(cfg: SaltTrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train masks, validation images, validation masks) of the fixed split.

    A dry run uses the first 16 tiles, the last 4 for validation; a first real run writes
    the split file.
    """
    ids = sd.read_ids(Path(cfg.data))
    if cfg.dry_run:
        ids = ids[:16]
    images, masks = sd.load_tiles(Path(cfg.data), ids)
    if cfg.dry_run:
        val_ids = set(ids[12:])
    elif sd.SPLIT_FILE.exists():
        val_ids = set(sd.read_split())
    else:
        val_ids = set(sd.make_split(ids, masks))
        sd.SPLIT_FILE.write_text("\n".join(sorted(val_ids)) + "\n")
    is_val = np.array([i in val_ids for i in ids])
    return images[~is_val], masks[~is_val], images[is_val], masks[is_val]


def train_salt(cfg: SaltTrainConfig) -> dict:
    """Train, validate and export the salt segmenter; returns the written ``meta.json`` dict."""
    if cfg.retune:
        return retune_and_export(cfg)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = select_device(cfg.device)
    run_dir, out_dir = Path(cfg.run_dir), Path(cfg.output)
    run_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(asdict(cfg), indent=2))

    tr_x, tr_y, va_x, va_y = _load_split(cfg)
    mean, std = float(tr_x.mean() / 255), float(tr_x.std() / 255)
    if cfg.label_fraction < 1:
        keep = subset_fraction(len(tr_x), tr_y.reshape(len(tr_y), -1).any(1), cfg.label_fraction, cfg.seed)
        tr_x, tr_y = tr_x[keep], tr_y[keep]
    log.info("train %d tiles, validate %d, mean %.4f std %.4f, device %s", len(tr_x), len(va_x), mean, std, device)

    model = build_unet()
    pretext_info = None
    if cfg.pretrain != "none":
        encoder_state, pretext_info = pretrained_encoder(cfg, run_dir)
        model.encoder.load_state_dict(encoder_state)
    if cfg.init_from:
        model.load_state_dict(load_weights(Path(cfg.init_from)))
    model = model.to(device).to(memory_format=torch.channels_last)
    ps_x, ps_y = _pseudo_labels(cfg, model, va_x, va_y, mean, std, device, run_dir)
    n_pseudo = int(round(cfg.pseudo_fraction * len(tr_x))) if len(ps_x) else 0
    # Rows >= len(tr_x) of the pools are the pseudo-labelled tiles.
    pool_x, pool_y = np.concatenate([tr_x, ps_x]), np.concatenate([tr_y, ps_y.astype(tr_y.dtype)])
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.dry_run:
        cfg.batch_size = min(cfg.batch_size, max(1, len(tr_x) // 2))
    steps_per_epoch = max(1, (len(tr_x) + n_pseudo) // cfg.batch_size)
    if cfg.max_steps:
        cfg.epochs = math.ceil(cfg.max_steps / steps_per_epoch)
    total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, total_steps, steps_per_epoch))
    start_epoch, best, minutes_before = 0, {"tgs_metric": -1.0}, 0.0
    ckpt_path = run_dir / "last.pt"
    if cfg.resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, best = state["epoch"] + 1, state["best"]
        minutes_before = state.get("minutes", 0.0)
        log.info("resumed at epoch %d (best %.4f)", start_epoch, best["tgs_metric"])

    gen = torch.Generator().manual_seed(cfg.seed)
    metrics_file = run_dir / "metrics.csv"
    started = time.time() - minutes_before * 60
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        use_lovasz = epoch >= cfg.lovasz_from
        order = torch.randperm(len(tr_x), generator=gen).numpy()
        if n_pseudo:  # a fresh sample of the pseudo-labelled tiles each epoch
            sample = torch.randperm(len(ps_x), generator=gen)[:n_pseudo].numpy() + len(tr_x)
            order = np.concatenate([order, sample])[torch.randperm(len(order) + len(sample), generator=gen).numpy()]
        n_steps = 2 if cfg.dry_run else steps_per_epoch
        if cfg.max_steps:
            n_steps = min(n_steps, cfg.max_steps - epoch * steps_per_epoch)
        bar = tqdm(range(n_steps), desc=f"salt epoch {epoch + 1}/{cfg.epochs}", mininterval=10)
        total_loss = 0.0
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = torch.from_numpy(pool_x[idx]).float().div(255).unsqueeze(1)
            y = torch.from_numpy(pool_y[idx]).float().unsqueeze(1)
            x, y = sd.augment(x, y, gen)
            x = sd.pad_tiles((x - mean) / std).to(device).contiguous(memory_format=torch.channels_last)
            y = y.to(device)
            mask_logits, salt_logits = model(x)
            mask_logits = sd.crop_tiles(mask_logits)
            has_salt = (y.flatten(1).amax(1) > 0).float()
            cls_loss = F.binary_cross_entropy_with_logits(salt_logits[:, 0], has_salt)
            bce = F.binary_cross_entropy_with_logits(mask_logits, y)
            if use_lovasz and has_salt.any():
                sel = has_salt.bool()
                seg_loss = lovasz_hinge(mask_logits[sel], y[sel]) + 0.1 * bce
            else:
                seg_loss = bce
            loss = seg_loss + 0.05 * cls_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            ema.update_parameters(model)
            total_loss += loss.item()
            bar.set_postfix(loss=f"{total_loss / (step + 1):.4f}", lovasz=use_lovasz)
        row = {"epoch": epoch + 1, "loss": total_loss / n_steps, "lr": sched.get_last_lr()[0],
               "minutes": (time.time() - started) / 60}
        last = epoch == cfg.epochs - 1
        if (epoch + 1) % cfg.eval_every == 0 or last:
            probs, salts = predict_tiles(ema.module, va_x, mean, std, device)
            tuned = tune_thresholds(probs, salts, va_y)
            row.update(tuned)
            log.info("epoch %d: %s", epoch + 1, row)
            if tuned["tgs_metric"] > best["tgs_metric"]:
                best = {**tuned, "epoch": epoch + 1}
                meta = _export(ema.module, cfg, best, mean, std, len(tr_x), len(va_x), row["minutes"], device)
                extra = {}
                if cfg.init_from or cfg.pseudo_keep > 0:
                    extra.update(init_from=cfg.init_from, pseudo_keep=cfg.pseudo_keep,
                                 pseudo_fraction=cfg.pseudo_fraction, pseudo_tiles=int(len(ps_x)))
                if pretext_info is not None or cfg.label_fraction < 1 or cfg.max_steps:
                    extra.update(pretrain=cfg.pretrain, pretext=pretext_info,
                                 label_fraction=cfg.label_fraction, max_steps=cfg.max_steps)
                if extra:
                    meta["training"].update(extra)
                    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        with open(metrics_file, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["epoch", "loss", "lr", "minutes", "tgs_metric",
                                                    "threshold", "empty_threshold", "min_salt_pixels"])
            if fh.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "epoch": epoch, "best": best,
                    "minutes": row["minutes"]}, ckpt_path)
    return json.loads((out_dir / "meta.json").read_text())


def _pseudo_labels(cfg: SaltTrainConfig, model: torch.nn.Module, va_x: np.ndarray, va_y: np.ndarray,
                   mean: float, std: float, device: torch.device, run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-labelled tiles (uint8 images, bool masks) when ``cfg.pseudo_keep`` > 0, else empty arrays.

    The starting model is first scored on the validation split (logged, and its tuned thresholds
    post-process the pseudo-labels); the result is cached as ``run_dir/pseudo.npz`` for a resume.
    """
    empty = np.zeros((0, sd.TILE, sd.TILE), np.uint8), np.zeros((0, sd.TILE, sd.TILE), bool)
    if cfg.pseudo_keep <= 0:
        return empty
    cache = run_dir / "pseudo.npz"
    if cache.exists():
        saved = np.load(cache)
        return saved["images"], saved["masks"]
    probs, salts = predict_tiles(model, va_x, mean, std, device)
    post = tune_thresholds(probs, salts, va_y)
    log.info("starting model on the validation split: %s", post)
    unlabelled = Path(cfg.unlabelled) if cfg.unlabelled else Path(cfg.data) / "test" / "images"
    images, masks = make_pseudo_labels(model, unlabelled, mean, std, device, post, cfg.pseudo_keep,
                                       limit=16 if cfg.dry_run else None)
    np.savez_compressed(cache, images=images, masks=masks)
    return images, masks


def pretrained_encoder(cfg: SaltTrainConfig, run_dir: Path) -> tuple[dict, dict]:
    """Encoder weights from the ``cfg.pretrain`` pretext task, cached in ``run_dir``'s parent as
    ``pretext-<method>-<steps>.pt`` so that several fine-tuning runs share one pretraining."""
    cache = run_dir.parent / f"pretext-{cfg.pretrain}-{cfg.pretrain_steps}{'-dryrun' if cfg.dry_run else ''}.pt"
    if cache.exists():
        saved = torch.load(cache, map_location="cpu")
        return saved["encoder"], saved["info"]
    unlabelled = Path(cfg.unlabelled) if cfg.unlabelled else Path(cfg.data) / "test" / "images"
    state, info = pretrain_encoder(cfg.pretrain, unlabelled, 2 if cfg.dry_run else cfg.pretrain_steps,
                                   seed=cfg.seed, limit=16 if cfg.dry_run else None)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"encoder": state, "info": info}, cache)
    return state, info


def retune_and_export(cfg: SaltTrainConfig) -> dict:
    """Re-tune the post-processing of ``run_dir/last.pt``'s EMA weights on the validation split
    and export them (used when the grid of a finished run was too narrow)."""
    device = select_device(cfg.device)
    state = torch.load(Path(cfg.run_dir) / "last.pt", map_location=device)
    ema = AveragedModel(build_unet(), multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    ema.load_state_dict(state["ema"])
    tr_x, _, va_x, va_y = _load_split(cfg)
    mean, std = float(tr_x.mean() / 255), float(tr_x.std() / 255)
    probs, salts = predict_tiles(ema.module.to(device), va_x, mean, std, device)
    best = {**tune_thresholds(probs, salts, va_y), "epoch": state["epoch"] + 1}
    log.info("re-tuned epoch %d: %s", best["epoch"], best)
    _export(ema.module, cfg, best, mean, std, len(tr_x), len(va_x), state.get("minutes", 0.0), device)
    return json.loads((Path(cfg.output) / "meta.json").read_text())


def _export(net, cfg: SaltTrainConfig, best: dict, mean: float, std: float,
            n_train: int, n_val: int, minutes: float, device: torch.device) -> dict:
    """Write ``model.pt`` (TorchScript, CPU) and ``meta.json`` for the best weights so far."""
    import copy

    out_dir = Path(cfg.output)
    net = copy.deepcopy(net).cpu().float().to(memory_format=torch.contiguous_format)
    export_torchscript(SaltPredictor(net, best["empty_threshold"]), str(out_dir / "model.pt"))
    meta = {
        "task": "salt",
        "name": "salt-unet-resnet18",
        "version": time.strftime("%Y%m%d", time.gmtime()) + ("-dryrun" if cfg.dry_run else ""),
        "architecture": "U-Net (segmentation_models_pytorch) with a from-scratch ResNet-18 encoder "
                        "(depth 4), decoder (128, 64, 32, 16), salt/no-salt head; hflip TTA inside",
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
                 "val_split": "train/splits/salt_val_ids.txt"},
        "training": {"epochs": cfg.epochs, "lovasz_from": cfg.lovasz_from, "batch_size": cfg.batch_size,
                     "lr": cfg.lr, "minutes": round(minutes, 1), "device": str(device),
                     "threads": torch.get_num_threads(), "torch": torch.__version__},
        "command": cfg.command,
        "git_commit": git_commit(),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("exported %s (val TGS %.4f)", out_dir / "model.pt", best["tgs_metric"])
    return meta
