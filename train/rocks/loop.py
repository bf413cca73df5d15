"""Train the rock-type classifier (and its embedding) on Geological Image Similarity.

Exports ``models/similarity`` (L2-normalised embeddings from the classifier's penultimate layer)
and ``models/rocks`` (class probabilities, then the same embedding, so that the rocks page answers
with one forward pass), each a TorchScript ``model.pt``
with ``meta.json``; the similarity meta also reports precision@10 of the three search
methods (embedding, and the seed's raw pixels and K-Means) on the validation split.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from geovision import retrieval
from geovision.checkpoint import write_meta

from ..common.provenance import git_commit
from .data import SIZE, SPLIT_FILE, list_images, load_rgb, make_split
from .model import LABELS, RockClassifier, RockEmbedder, RockNet

log = logging.getLogger(__name__)


@dataclass
class RocksTrainConfig:
    """Arguments of :func:`train_rocks`."""

    data: str
    output: str = "models"
    run_dir: str = "runs/rocks"
    epochs: int = 15
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 42
    threads: int = 0
    dry_run: bool = False
    command: str = ""


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips, 90-degree rotations and brightness jitter on a batch (N, 3, H, W)."""
    n = x.shape[0]
    x = torch.where((torch.rand(n, generator=gen) < 0.5).view(-1, 1, 1, 1), x.flip(3), x)
    x = torch.where((torch.rand(n, generator=gen) < 0.5).view(-1, 1, 1, 1), x.flip(2), x)
    x = torch.where((torch.rand(n, generator=gen) < 0.5).view(-1, 1, 1, 1), x.transpose(2, 3), x)
    return x * (1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.2)


def _embed(net, x: np.ndarray, mean, std, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, C), L2-normalised embeddings (N, D)) of uint8 images (N, H, W, 3)."""
    net.eval()
    probs, embs = [], []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            t = (torch.from_numpy(x[i:i + batch]).permute(0, 3, 1, 2).float() / 255 - mean) / std
            f = net.features(t)
            probs.append(torch.softmax(net.head(f), 1).numpy())
            embs.append(F.normalize(f, dim=1).numpy())
    return np.concatenate(probs), np.concatenate(embs)


def evaluate_retrieval(train_x, train_y, val_x, val_y, train_emb, val_emb, k: int = 10) -> dict:
    """precision@k of the embedding, raw-pixel and K-Means methods (val queries, train gallery)."""
    _, ids = retrieval.search(retrieval.flat_index(train_emb), val_emb, k)
    out = {"embedding": retrieval.precision_at_k(val_y, train_y[ids])}
    train_px, val_px = retrieval.pixel_vectors(train_x), retrieval.pixel_vectors(val_x)
    _, ids = retrieval.search(retrieval.flat_index(train_px, "l2"), val_px, k)
    out["pixels"] = retrieval.precision_at_k(val_y, train_y[ids])
    centroids, assign, dist = retrieval.fit_kmeans(train_px, len(LABELS))
    _, ids = retrieval.kmeans_search(centroids, assign, dist, val_px, k)
    out["kmeans"] = retrieval.precision_at_k(val_y, train_y[ids])
    return {name: round(value, 4) for name, value in out.items()}


def train_rocks(cfg: RocksTrainConfig) -> dict:
    """Train, validate and export both models; returns the similarity ``meta.json`` dict."""
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    root, run_dir = Path(cfg.data), Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(asdict(cfg), indent=2))
    paths, labels = list_images(root)
    if cfg.dry_run:
        paths, labels = paths[::max(1, len(paths) // 48)], labels[::max(1, len(paths) // 48)]
    unknown = set(labels) - set(LABELS)
    if unknown:
        raise ValueError(f"unknown class folders {sorted(unknown)}; expected {LABELS}")
    if cfg.dry_run or not SPLIT_FILE.exists():
        val_set = set(make_split(paths, labels))
        if not cfg.dry_run:
            SPLIT_FILE.write_text("\n".join(sorted(val_set)) + "\n")
    else:
        val_set = set(SPLIT_FILE.read_text().split())
    images = np.stack([load_rgb(root / p) for p in tqdm(paths, desc="loading images", mininterval=5)])
    y = np.array([LABELS.index(lab) for lab in labels])
    is_val = np.array([p in val_set for p in paths])
    tr_x, tr_y, va_x, va_y = images[~is_val], y[~is_val], images[is_val], y[is_val]
    mean = torch.tensor(tr_x.reshape(-1, 3).mean(0) / 255, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(tr_x.reshape(-1, 3).std(0) / 255, dtype=torch.float32).view(1, 3, 1, 1)
    log.info("train %d images, validate %d", len(tr_x), len(va_x))

    net = RockNet(len(LABELS))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batch = min(cfg.batch_size, len(tr_x))
    steps = max(1, len(tr_x) // batch)
    epochs = 1 if cfg.dry_run else cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=epochs * steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    started = time.time()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(tr_x), generator=gen)
        bar = tqdm(range(steps), desc=f"rocks epoch {epoch + 1}/{epochs}", mininterval=5)
        for step in bar:
            idx = order[step * batch:(step + 1) * batch].numpy()
            x = (torch.from_numpy(tr_x[idx]).permute(0, 3, 1, 2).float() / 255 - mean) / std
            loss = F.cross_entropy(net(_augment(x, gen)), torch.from_numpy(tr_y[idx]), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        probs, _ = _embed(net, va_x, mean, std)
        accuracy = float((probs.argmax(1) == va_y).mean())
        row = {"epoch": epoch + 1, "val_accuracy": round(accuracy, 4), "minutes": round((time.time() - started) / 60, 2)}
        log.info("epoch %s", row)
        with open(run_dir / "metrics.csv", "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            writer.writerow(row) if fh.tell() else (writer.writeheader(), writer.writerow(row))

    _, tr_emb = _embed(net, tr_x, mean, std)
    probs, va_emb = _embed(net, va_x, mean, std)
    accuracy = float((probs.argmax(1) == va_y).mean())
    p_at_10 = evaluate_retrieval(tr_x, tr_y, va_x, va_y, tr_emb, va_emb)
    log.info("validation accuracy %.4f, precision@10 %s", accuracy, p_at_10)
    common = {
        "labels": LABELS, "input_shape": [3, SIZE, SIZE],
        "normalization": {"scale": 1 / 255, "mean": [round(v, 6) for v in mean.flatten().tolist()],
                          "std": [round(v, 6) for v in std.flatten().tolist()]},
        "resize": "bilinear to 28x28, RGB",
        "architecture": "RockNet: 3 conv stages (32-64-128 channels), global average pool, "
                        "128-d embedding layer, linear head; trained from scratch",
        "data": {"dataset": "Geological Image Similarity (Kaggle)", "train_images": len(tr_x),
                 "val_images": len(va_x), "val_split": "train/splits/rocks_val_ids.txt"},
        "training": {"epochs": epochs, "batch_size": batch, "lr": cfg.lr,
                     "minutes": round((time.time() - started) / 60, 1), "device": "cpu",
                     "threads": torch.get_num_threads(), "torch": torch.__version__},
        "command": cfg.command, "git_commit": git_commit(),
        "version": time.strftime("%Y%m%d", time.gmtime()) + ("-dryrun" if cfg.dry_run else ""),
    }
    net = copy.deepcopy(net).eval()
    similarity = {"task": "similarity", "name": "rocknet-embedding", "output": "L2-normalised embedding (N, 128)",
                  "embedding_dim": 128, "gallery_index": "faiss.IndexFlatIP",
                  "metrics": {"val_precision_at_10": p_at_10["embedding"], "val_precision_at_10_by_method": p_at_10}}
    export(RockEmbedder(net), Path(cfg.output) / "similarity", {**similarity, **common})
    export(RockClassifier(net), Path(cfg.output) / "rocks", {**rocks_meta(accuracy, Path(cfg.output)), **common})
    return json.loads((Path(cfg.output) / "similarity" / "meta.json").read_text())


def rocks_meta(accuracy: float, output: Path) -> dict:
    """The rocks ``meta.json`` fields of a classifier exported beside ``output/similarity``: its
    output columns and the fingerprint of the similarity checkpoint whose embedding it repeats."""
    digest = hashlib.sha256((output / "similarity" / "model.pt").read_bytes()).hexdigest()[:16]
    similarity = json.loads((output / "similarity" / "meta.json").read_text())
    return {"task": "rocks", "name": "rocknet-classifier",
            "output": "class probabilities (N, 6) in the order of labels, then the L2-normalised embedding (N, 128)",
            "embedding_columns": [len(LABELS), len(LABELS) + 128],
            "embedding_of": {"name": similarity["name"], "version": similarity["version"], "sha256": digest},
            "metrics": {"val_accuracy": round(accuracy, 4)}}


def export(module: torch.nn.Module, out: Path, meta: dict) -> None:
    """Trace ``module`` on a random batch, check it against the eager module, save it with ``meta``."""
    out.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        example = torch.randn(4, 3, SIZE, SIZE)
        traced = torch.jit.trace(module, example, check_trace=False)
        if not torch.allclose(traced(example), module(example), atol=1e-5):
            raise RuntimeError(f"traced {meta['task']} model differs from eager model")
    traced.save(str(out / "model.pt"))
    write_meta(out, meta)
    log.info("exported %s", out)
