"""Distil the released salt ensemble into one U-Net (knowledge distillation, Hinton et al. 2015).

    python -m train.salt.distill --data ../shared/data/tgs-salt --teacher models/salt/model.pt \
        --run-dir runs/salt_distill --output runs/salt_distill/export --epochs 12 --threads 2

The teacher (an exported prediction ensemble of U-Nets, flip TTA) labels the labelled training
tiles and the 4,000 unlabelled ``test/images`` tiles once (cached in ``RUN_DIR/teacher.npz``);
the student, one U-Net started from a teacher member, learns from its soft probabilities
(pixel BCE) and salt/no-salt head, plus the Lovász hinge on hard masks: the ground truth on
labelled tiles, the teacher's post-processed mask on unlabelled ones. The validation split
(``train/splits/salt_val_ids.txt``) is never trained on; it chooses the epoch and thresholds.
Training runs under bfloat16 autocast with channels-last tensors (2.4x faster than float32
on an AVX-512-BF16 CPU, see ``docs/PERFORMANCE.md``); the run resumes from ``RUN_DIR/last.pt``.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..common.checkpoints import optimiser_step, resume_run, save_run
from ..common.runtime import warmup_cosine
from . import data as sd
from .config import SaltTrainConfig
from .evaluate import apply_postprocessing, load_split, predict_tiles, tune_thresholds
from .export import export_salt
from .losses import lovasz_hinge
from .model import unet_for
from .pretext import load_unlabelled
from .snapshots import SnapshotEnsemble

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    """Arguments of :func:`distill`."""

    data: str
    teacher: str = "models/salt/model.pt"
    student_member: int = 1        #: teacher member whose weights start the student
    run_dir: str = "runs/salt_distill"
    output: str = "runs/salt_distill/export"
    epochs: int = 12
    unlabelled_per_epoch: int = 2000
    batch_size: int = 32
    lr: float = 5e-4
    soft_weight: float = 0.5
    holdout: str = ""              #: ids never seen (train/splits/salt_untouched_ids.txt; the teacher must not have seen them either)
    ema_decay: float = 0.995
    seed: int = 42
    threads: int = 0
    bf16: bool = True
    dry_run: bool = False
    command: str = ""


def teacher_members(path: Path) -> list[torch.nn.Module]:
    """The U-Nets of an exported ensemble ``model.pt`` (state keys ``net.nets.<i>.*``), or its
    single U-Net (``net.*``), as eager modules in eval mode."""
    state = torch.jit.load(str(path), map_location="cpu").state_dict()
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.startswith("net.nets."):
            index, rest = key.removeprefix("net.nets.").split(".", 1)
            groups.setdefault(index, {})[rest] = value
        elif key.startswith("net."):
            groups.setdefault("0", {})[key.removeprefix("net.")] = value
    members = []
    for index in sorted(groups, key=int):
        net = unet_for(groups[index])
        net.load_state_dict(groups[index])
        members.append(net.eval())
    return members


def teacher_targets(cfg: DistillConfig, images: np.ndarray, mean: float, std: float) -> tuple[np.ndarray, np.ndarray]:
    """Teacher probabilities uint8 (N, 101, 101) (0..255) and head probabilities float (N,), cached."""
    cache = Path(cfg.run_dir) / "teacher.npz"
    if cache.exists():
        saved = np.load(cache)
        if len(saved["probs"]) == len(images):
            return saved["probs"], saved["salts"]
    teacher = SnapshotEnsemble(teacher_members(Path(cfg.teacher))).eval()
    log.info("teacher: %d member(s), labelling %d tiles", len(teacher.nets), len(images))
    probs, salts = predict_tiles(teacher, images, mean, std, torch.device("cpu"), bf16=cfg.bf16)
    probs8 = np.round(probs * 255).astype(np.uint8)
    np.savez(cache, probs=probs8, salts=salts.astype(np.float32))
    return probs8, salts.astype(np.float32)


def distill(cfg: DistillConfig) -> dict:
    """Train the student and export its best epoch (validation TGS metric) to ``cfg.output``."""
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    Path(cfg.output).mkdir(parents=True, exist_ok=True)
    tr_x, tr_y, va_x, va_y = load_split(cfg.data, cfg.dry_run, cfg.holdout)
    mean, std = float(tr_x.mean() / 255), float(tr_x.std() / 255)
    un_x = load_unlabelled(Path(cfg.data) / "test" / "images", 16 if cfg.dry_run else None)
    pool_x = np.concatenate([tr_x, un_x])
    soft, salts = teacher_targets(cfg, pool_x, mean, std)
    if not (run_dir / "last.pt").exists():  # the teacher's own score, as the student's bar
        teacher = SnapshotEnsemble(teacher_members(Path(cfg.teacher))).eval()
        log.info("teacher on the validation split (bf16 %s): %s", cfg.bf16,
                 tune_thresholds(*predict_tiles(teacher, va_x, mean, std, torch.device("cpu"), bf16=cfg.bf16), va_y))
    teacher_masks = apply_postprocessing(soft.astype(np.float32) / 255, salts, 0.5, 0.5, 0)
    hard = np.concatenate([tr_y.astype(bool), teacher_masks[len(tr_x):]])
    n_lab, n_unl = len(tr_x), min(cfg.unlabelled_per_epoch, len(un_x))

    model = teacher_members(Path(cfg.teacher))[cfg.student_member].train().to(memory_format=torch.channels_last)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    if cfg.dry_run:
        cfg = replace(cfg, batch_size=min(cfg.batch_size, (n_lab + n_unl) // 2))
    steps = 2 if cfg.dry_run else max(1, (n_lab + n_unl) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps * cfg.epochs, steps))
    (run_dir / "args.json").write_text(json.dumps(asdict(cfg), indent=2))
    modules = {"model": model, "ema": ema}
    start, best, minutes_before = resume_run(run_dir / "last.pt", modules, opt, sched) or (0, {"tgs_metric": -1.0}, 0.0)
    gen = torch.Generator().manual_seed(cfg.seed + start)
    started = time.time() - minutes_before * 60
    for epoch in range(start, cfg.epochs):
        order = np.concatenate([torch.randperm(n_lab, generator=gen).numpy(),
                                torch.randperm(len(un_x), generator=gen)[:n_unl].numpy() + n_lab])
        order = order[torch.randperm(len(order), generator=gen).numpy()]
        model.train()
        total = 0.0
        for step in tqdm(range(steps), desc=f"distil epoch {epoch + 1}/{cfg.epochs}", mininterval=30):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = torch.from_numpy(pool_x[idx]).float().div(255).unsqueeze(1)
            y = torch.from_numpy(hard[idx]).float().unsqueeze(1)
            p = torch.from_numpy(soft[idx]).float().div(255).unsqueeze(1)
            x, y, p = sd.augment(x, y, gen, soft=p)
            x = sd.pad_tiles((x - mean) / std).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                mask_logits, salt_logits = model(x)
            mask_logits, salt_logits = sd.crop_tiles(mask_logits).float(), salt_logits.float()
            has_salt = y.flatten(1).amax(1) > 0
            loss = cfg.soft_weight * F.binary_cross_entropy_with_logits(mask_logits, p)
            loss = loss + 0.05 * F.binary_cross_entropy_with_logits(salt_logits[:, 0], torch.from_numpy(salts[idx]))
            if has_salt.any():
                loss = loss + lovasz_hinge(mask_logits[has_salt], y[has_salt])
            total += optimiser_step(loss, opt, sched, ema, model)
        probs, val_salts = predict_tiles(ema.module, va_x, mean, std, torch.device("cpu"))
        row = {"epoch": epoch + 1, "loss": total / steps, "minutes": (time.time() - started) / 60,
               **tune_thresholds(probs, val_salts, va_y)}
        log.info("epoch %d: %s", epoch + 1, row)
        if row["tgs_metric"] > best["tgs_metric"]:
            best = {k: row[k] for k in ("tgs_metric", "threshold", "empty_threshold", "min_salt_pixels", "epoch")}
            train_cfg = SaltTrainConfig(data=cfg.data, output=cfg.output, epochs=cfg.epochs, batch_size=cfg.batch_size,
                                        lr=cfg.lr, dry_run=cfg.dry_run, command=cfg.command, holdout=cfg.holdout)
            export_salt(ema.module, train_cfg, best, mean, std, n_lab, len(va_x), row["minutes"], torch.device("cpu"),
                        extra={"training": {"distillation": {
                            "teacher": cfg.teacher, "student_init": f"teacher member {cfg.student_member}",
                            "unlabelled_tiles": len(un_x), "unlabelled_per_epoch": n_unl,
                            "soft_weight": cfg.soft_weight, "bf16_autocast": cfg.bf16}}})
        with open(run_dir / "metrics.csv", "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if fh.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
        save_run(run_dir / "last.pt", modules, opt, sched, epoch, best, row["minutes"])
    return best


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m train.salt.distill", description=__doc__.splitlines()[0])
    for name, default in asdict(DistillConfig(data="")).items():
        if name == "command":
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default, required=name == "data")
    argv = sys.argv[1:] if argv is None else argv
    cfg = DistillConfig(**vars(parser.parse_args(argv)), command="python -m train.salt.distill " + shlex.join(argv))
    return distill(cfg)


if __name__ == "__main__":
    main()
