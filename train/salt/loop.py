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
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..common.checkpoints import optimiser_step, resume_run, save_run
from ..common.runtime import start_run, warmup_cosine
from . import data as sd
from .config import SaltTrainConfig
from .evaluate import load_split, predict_tiles, tune_thresholds
from .export import export_salt, retune_and_export
from .losses import lovasz_hinge
from .model import build_unet
from .pretext import pretrain_encoder, subset_fraction
from .pseudo import load_weights, make_pseudo_labels

log = logging.getLogger(__name__)


def train_salt(cfg: SaltTrainConfig) -> dict:
    """Train, validate and export the salt segmenter; returns the written ``meta.json`` dict."""
    if cfg.retune:
        return retune_and_export(cfg)
    device = start_run(cfg.seed, cfg.threads, cfg.device, cfg.run_dir, cfg.output)
    run_dir, out_dir = Path(cfg.run_dir), Path(cfg.output)

    tr_x, tr_y, va_x, va_y = load_split(cfg.data, cfg.dry_run, cfg.holdout)
    if cfg.extra_tiles:   # e.g. the users' corrections (flask train-model salt --corrections): training only
        extra_ids = sd.read_ids(Path(cfg.extra_tiles))
        if extra_ids:
            ex_x, ex_y = sd.load_tiles(Path(cfg.extra_tiles), extra_ids)
            tr_x, tr_y = np.concatenate([tr_x, ex_x]), np.concatenate([tr_y, ex_y])
        log.info("added %d extra training tiles from %s", len(extra_ids), cfg.extra_tiles)
    mean, std = cfg.normalization or (float(tr_x.mean() / 255), float(tr_x.std() / 255))
    if cfg.label_fraction < 1:
        keep = subset_fraction(len(tr_x), tr_y.reshape(len(tr_y), -1).any(1), cfg.label_fraction, cfg.seed)
        tr_x, tr_y = tr_x[keep], tr_y[keep]
    log.info("train %d tiles, validate %d, mean %.4f std %.4f, device %s", len(tr_x), len(va_x), mean, std, device)

    model = build_unet(**cfg.layout)
    pretext_info = None
    if cfg.pretrain != "none" and cfg.encoder != "resnet18":
        raise ValueError("self-supervised pretraining (--pretrain) is for the from-scratch encoder: add --encoder resnet18")
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
        cfg = replace(cfg, batch_size=min(cfg.batch_size, max(1, len(tr_x) // 2)))
    steps_per_epoch = max(1, (len(tr_x) + n_pseudo) // cfg.batch_size)
    if cfg.max_steps:
        cfg = replace(cfg, epochs=math.ceil(cfg.max_steps / steps_per_epoch))
    # The values the run actually uses (batch size and epochs resolved above).
    (run_dir / "args.json").write_text(json.dumps(asdict(cfg), indent=2))
    total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, total_steps, steps_per_epoch))
    start_epoch, best, minutes_before = 0, {"tgs_metric": -1.0}, 0.0
    ckpt_path, modules = run_dir / "last.pt", {"model": model, "ema": ema}
    resumed = resume_run(ckpt_path, modules, opt, sched, device) if cfg.resume else None
    if resumed:
        start_epoch, best, minutes_before = resumed

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
        loss = train_one_epoch(model, ema, opt, sched, pool_x, pool_y, order, n_steps, cfg.batch_size,
                               (mean, std), use_lovasz, gen, device, f"salt epoch {epoch + 1}/{cfg.epochs}", cfg.bf16)
        row = {"epoch": epoch + 1, "loss": loss, "lr": sched.get_last_lr()[0],
               "minutes": (time.time() - started) / 60}
        last = epoch == cfg.epochs - 1
        if (epoch + 1) % cfg.eval_every == 0 or last:
            probs, salts = predict_tiles(ema.module, va_x, mean, std, device)
            tuned = tune_thresholds(probs, salts, va_y)
            row.update(tuned)
            log.info("epoch %d: %s", epoch + 1, row)
            if tuned["tgs_metric"] > best["tgs_metric"]:
                best = {**tuned, "epoch": epoch + 1}
                export_salt(ema.module, cfg, best, mean, std, len(tr_x), len(va_x), row["minutes"], device,
                            extra={"training": _training_extras(cfg, len(ps_x), pretext_info)})
        with open(metrics_file, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["epoch", "loss", "lr", "minutes", "tgs_metric",
                                                    "threshold", "empty_threshold", "min_salt_pixels"])
            if fh.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
        save_run(ckpt_path, modules, opt, sched, epoch, best, row["minutes"])
    return json.loads((out_dir / "meta.json").read_text())


def _training_extras(cfg: SaltTrainConfig, pseudo_tiles: int, pretext_info: dict | None) -> dict:
    """``meta.json`` training fields of fine-tuning (init_from, pseudo-labels) and pretraining runs."""
    extra: dict = {}
    if cfg.init_from or cfg.pseudo_keep > 0:
        extra.update(init_from=cfg.init_from, pseudo_keep=cfg.pseudo_keep,
                     pseudo_fraction=cfg.pseudo_fraction, pseudo_tiles=pseudo_tiles)
    if pretext_info is not None or cfg.label_fraction < 1 or cfg.max_steps:
        extra.update(pretrain=cfg.pretrain, pretext=pretext_info,
                     label_fraction=cfg.label_fraction, max_steps=cfg.max_steps)
    return extra


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


def train_one_epoch(model: torch.nn.Module, ema: AveragedModel, opt: torch.optim.Optimizer,
                    sched: torch.optim.lr_scheduler.LRScheduler, pool_x: np.ndarray, pool_y: np.ndarray,
                    order: np.ndarray, n_steps: int, batch_size: int, norm: tuple[float, float],
                    use_lovasz: bool, gen: torch.Generator, device: torch.device, desc: str,
                    bf16: bool = False) -> float:
    """``n_steps`` optimiser steps over ``pool_x[order]`` (uint8 (N, 101, 101) tiles, masks 0/1);
    BCE (+ 0.05 salt/no-salt head BCE), or the Lovász hinge on tiles with salt + 0.1 BCE; the
    forward pass under bfloat16 autocast when ``bf16`` (losses in float32). Returns the mean loss."""
    mean, std = norm
    bar = tqdm(range(n_steps), desc=desc, mininterval=10)
    total_loss = 0.0
    for step in bar:
        idx = order[step * batch_size:(step + 1) * batch_size]
        x = torch.from_numpy(pool_x[idx]).float().div(255).unsqueeze(1)
        y = torch.from_numpy(pool_y[idx]).float().unsqueeze(1)
        x, y = sd.augment(x, y, gen)
        x = sd.pad_tiles((x - mean) / std).to(device).contiguous(memory_format=torch.channels_last)
        y = y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            mask_logits, salt_logits = model(x)
        mask_logits, salt_logits = sd.crop_tiles(mask_logits).float(), salt_logits.float()
        has_salt = (y.flatten(1).amax(1) > 0).float()
        cls_loss = F.binary_cross_entropy_with_logits(salt_logits[:, 0], has_salt)
        bce = F.binary_cross_entropy_with_logits(mask_logits, y)
        if use_lovasz and has_salt.any():
            sel = has_salt.bool()
            seg_loss = lovasz_hinge(mask_logits[sel], y[sel]) + 0.1 * bce
        else:
            seg_loss = bce
        loss = seg_loss + 0.05 * cls_loss
        total_loss += optimiser_step(loss, opt, sched, ema, model)
        bar.set_postfix(loss=f"{total_loss / (step + 1):.4f}", lovasz=use_lovasz)
    return total_loss / n_steps
