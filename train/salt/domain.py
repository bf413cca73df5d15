"""Fit the salt model's domain check (:mod:`geovision.domain`) and write ``models/salt/domain.npz``.

    python -m train.salt.domain --data ../shared/data/tgs-salt [--model models/salt] [--train-tiles 2000]

Fits the mean and shrunk covariance of the encoder's pooled deepest features on TGS training
tiles (neither the validation nor the untouched split), sets the threshold at the 99th percentile
of the validation tiles' distances, and records both in the checkpoint's ``meta.json``
(``domain_check``). The AUROC against real sections is measured through the API by
``python bench/domain_check.py`` (the untouched tiles and ``seismic-real/`` play no part here).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from geovision import domain, tiling
from geovision.checkpoint import load_checkpoint

from .data import load_tiles, read_ids, read_split

UNTOUCHED = Path(__file__).resolve().parent.parent / "splits" / "salt_untouched_ids.txt"


def features_of(ckpt, images: np.ndarray) -> np.ndarray:
    """(n, C) encoder features of uint8 tiles (n, 101, 101), prepared as served (one tile each)."""
    inputs = np.concatenate([tiling.model_inputs(im.astype(np.float32) / 255, ckpt.meta, tiling.OVERLAP)[0]
                             for im in images])
    return domain.encoder_features(ckpt.module, torch.from_numpy(inputs))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="models/salt")
    parser.add_argument("--train-tiles", type=int, default=2000)
    parser.add_argument("--shrinkage", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.model, torch.device("cpu"))
    val = set(read_split())
    held = val | set(UNTOUCHED.read_text().split())
    train_ids = [i for i in read_ids(Path(args.data)) if i not in held]
    rng = np.random.default_rng(0)
    train_ids = sorted(rng.choice(train_ids, size=min(args.train_tiles, len(train_ids)), replace=False).tolist())
    mean, precision = domain.fit(features_of(ckpt, load_tiles(Path(args.data), train_ids)[0]), args.shrinkage)
    val_d = domain.distances(features_of(ckpt, load_tiles(Path(args.data), sorted(val))[0]), mean, precision)
    threshold = float(np.percentile(val_d, 99))
    np.savez(Path(args.model) / domain.FILE, mean=mean, precision=precision, threshold=np.float32(threshold))
    meta_path = Path(args.model) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["domain_check"] = {
        **meta.get("domain_check", {}),
        "method": "Mahalanobis distance of the encoder's space-averaged deepest features (320-d) to the TGS "
                  f"training tiles' ({len(train_ids)} tiles, covariance shrunk by {args.shrinkage}); an image scores "
                  f"the median of up to {domain.MAX_TILES} tiles",
        "threshold": round(threshold, 3), "threshold_source": f"99th percentile of the {len(val)} validation tiles",
        "command": "python -m train.salt.domain " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta["domain_check"], indent=2))
    return meta["domain_check"]


if __name__ == "__main__":
    main()
