"""Fine-tune the last stages of a pretrained whale embedding over cached early-stage features.

On two CPU cores a full fine-tune of EfficientNet-Lite at the photos' resolution does not
learn in the hours available (two ArcFace runs: known top-5 2-3 % after 2 epochs). The early
stages of an ImageNet network compute generic edges and textures and are usually frozen when
fine-tuning on few images (Yosinski et al., "How transferable are features in deep neural
networks?", NeurIPS 2014). Here they run once per photo and augmented view (flips, affine and
colour jitter of :func:`train.whales.loop.augment`); their outputs are kept in memory (bf16)
and only the stages from ``frozen_stages`` on, the GeM pooling and the embedding neck are
trained, with ArcFace whose class centres start at each individual's mean embedding (weight
imprinting, Qi et al., CVPR 2018) so the margin loss starts from the pretrained geometry
instead of destroying it. The exported model is the whole network (frozen stages included).
"""
from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..common.runtime import start_run, warmup_cosine
from .export import export
from .loop import METRICS_COLUMNS, WhalesTrainConfig, _load, _score, augment, groups, identify_all, normalisation, shortlist_figures
from .model import ArcFace, WhaleNet, imprint

log = logging.getLogger(__name__)


class Trunk(nn.Module):
    """The frozen first ``n`` stages of a timm EfficientNet (stem, its BN, ``blocks[:n]``)."""

    def __init__(self, backbone: nn.Module, n: int):
        super().__init__()
        self.stem = nn.Sequential(backbone.conv_stem, backbone.bn1, *backbone.blocks[:n])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


class Top(nn.Module):
    """The trained rest: ``blocks[n:]``, the head conv, GeM and the embedding neck of a WhaleNet."""

    def __init__(self, net: WhaleNet, n: int):
        super().__init__()
        b = net.backbone
        self.blocks = nn.Sequential(*b.blocks[n:], b.conv_head, b.bn2)
        self.pool, self.neck = net.pool, net.neck

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.neck(self.pool(self.blocks(features)))


def cache_features(trunk: Trunk, images: np.ndarray, mean: torch.Tensor, std: torch.Tensor, views: int,
                   gen: torch.Generator, batch_size: int = 64, desc: str = "caching") -> torch.Tensor:
    """bf16 (views, N, C, h, w) trunk outputs of uint8 photos (N, H, W, 3).

    View 0 is the photo as served, view 1 its mirror image, later views random flips with the
    affine and colour jitter of :func:`train.whales.loop.augment`."""
    trunk.eval()
    out = None
    with torch.inference_mode():
        for v in range(views):
            for i in tqdm(range(0, len(images), batch_size), desc=f"{desc} view {v + 1}/{views}", mininterval=20):
                x = torch.from_numpy(images[i:i + batch_size]).permute(0, 3, 1, 2).float().div(255)
                if v == 1:
                    x = x.flip(3)
                elif v > 1:
                    flip = torch.rand(len(x), generator=gen) < 0.5
                    x = augment(torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x), gen)
                f = trunk(((x - mean) / std).contiguous(memory_format=torch.channels_last))
                if out is None:
                    out = torch.empty((views, len(images), *f.shape[1:]), dtype=torch.bfloat16)
                out[v, i:i + len(x)] = f.to(torch.bfloat16)
    return out


def embed_cached(top: Top, features: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """float32 (N, D) L2-normalised embeddings of cached trunk outputs (N, C, h, w)."""
    top.eval()
    with torch.inference_mode():
        out = [F.normalize(top(features[i:i + batch_size].float()), dim=1) for i in range(0, len(features), batch_size)]
    return torch.cat(out).numpy()


def validate(top: Top, va_f: torch.Tensor, tr_f: torch.Tensor, gallery_ids: np.ndarray, truths: list[str],
             q_groups: list[str], g_groups: list[str]) -> dict:
    """MAP@5 (calibrated ``new_whale`` threshold), known top-1/5 and top-20 of the embedding alone."""
    ranked = identify_all(embed_cached(top, va_f), embed_cached(top, tr_f), gallery_ids, q_groups, g_groups, limit=20)
    return shortlist_figures(ranked, truths)


def train_cached(cfg: WhalesTrainConfig) -> dict:
    """Cache the first ``cfg.frozen_stages`` stages, train the rest, export the best; returns meta.json."""
    device = start_run(cfg.seed, cfg.threads, "cpu", cfg.run_dir)
    run_dir = Path(cfg.run_dir)
    (run_dir / "args.json").write_text(json.dumps(asdict(cfg), indent=2))
    train_rows, queries, tr_x, va_x = _load(cfg)
    classes = sorted({r["Id"] for r in train_rows})
    tr_y = np.array([classes.index(r["Id"]) for r in train_rows])
    gallery_ids, truths = np.array([r["Id"] for r in train_rows]), [q["truth"] for q in queries]
    q_groups, g_groups = groups(queries), groups(train_rows)
    mean, std = normalisation(cfg, tr_x)
    net = WhaleNet(cfg.embedding_dim, cfg.width, cfg.backbone, cfg.pretrained).to(memory_format=torch.channels_last)
    trunk, top = Trunk(net.backbone, cfg.frozen_stages), Top(net, cfg.frozen_stages)
    trunk.requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed)
    views = 1 if cfg.dry_run else cfg.cached_views
    tr_f = cache_features(trunk, tr_x, mean, std, views, gen, desc="training photos")
    va_f = cache_features(trunk, va_x, mean, std, 1, gen, desc="queries")[0]
    log.info("cached %s trunk outputs of %d photos x %d views (%.0f MB)", tuple(tr_f.shape[2:]), len(tr_x), views,
             tr_f.numel() * 2 / 1e6)

    head = ArcFace(cfg.embedding_dim, len(classes), cfg.scale, cfg.margin, cfg.subcenters)
    imprint(head, embed_cached(top, tr_f[0]), tr_y)
    opt = torch.optim.AdamW([{"params": list(top.blocks.parameters()), "lr": cfg.lr * cfg.backbone_lr_scale},
                             {"params": list(top.pool.parameters()) + list(top.neck.parameters())},
                             {"params": list(head.parameters())}],
                            lr=cfg.lr, weight_decay=cfg.weight_decay)
    batch = min(cfg.batch_size, max(2, len(tr_x) // 2))        # a tiny data set still gives 2 full steps
    steps, epochs = (2, 1) if cfg.dry_run else (max(1, len(tr_x) // batch), cfg.epochs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, epochs * steps, steps))
    best = {**validate(top, va_f, tr_f[0], gallery_ids, truths, q_groups, g_groups), "epoch": 0}
    log.info("epoch 0 (pretrained, imprinted): %s", best)
    export(net, cfg, best, mean, std, len(tr_x), len(classes), queries, 0.0, device)
    started = time.time()
    for epoch in range(epochs):
        top.train()
        head.m = cfg.margin * min(1.0, epoch / max(1, cfg.margin_warmup))
        order = torch.randperm(len(tr_x), generator=gen)
        total_loss, correct = 0.0, 0
        for step in tqdm(range(steps), desc=f"whales epoch {epoch + 1}/{epochs}", mininterval=20):
            idx = order[step * batch:(step + 1) * batch]
            view = torch.randint(0, views, (len(idx),), generator=gen)
            x, y = tr_f[view, idx].float(), torch.from_numpy(tr_y[idx.numpy()])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                emb = top(x.contiguous(memory_format=torch.channels_last))
            logits = head(emb.float(), y)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item()
            correct += int((logits.argmax(1) == y).sum())
        row = {"epoch": epoch + 1, "margin": round(head.m, 3), "loss": round(total_loss / steps, 4),
               "train_accuracy": round(correct / (steps * batch), 4), "lr": sched.get_last_lr()[1],
               "minutes": round((time.time() - started) / 60, 2)}
        if (epoch + 1) % cfg.eval_every == 0 or epoch == epochs - 1:
            row.update(validate(top, va_f, tr_f[0], gallery_ids, truths, q_groups, g_groups))
            if _score(row) > _score(best):
                best = {**row, "epoch": epoch + 1}
                export(net, cfg, best, mean, std, len(tr_x), len(classes), queries, row["minutes"], device)
        log.info("epoch %s", row)
        with open(run_dir / "metrics.csv", "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
            if fh.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
    return json.loads((Path(cfg.output) / "meta.json").read_text())
