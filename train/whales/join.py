"""Join exported whale embeddings into one released checkpoint (an ensemble served as one model).

    python -m train.whales.join --model models/whales --also runs/whales_lite2/model \\
        --output runs/whales_joined
    python -m train.whales.fusion --data ../shared/data/whales --dump runs/photoid_val.pkl \\
        --model runs/whales_joined --write-meta models/whales/meta.json

Each member is an exported embedding (TorchScript ``model.pt`` giving L2-normalised rows, and its
``meta.json``) with the same input shape and normalisation. The joined module runs every member
on the same input and concatenates their embeddings scaled by ``1/sqrt(n)``: the rows stay unit
length and the inner product of two joined rows is the mean of the members' cosines
(:func:`train.whales.studies.ensemble.join`, the study that measured it). Its weights are stored
in float16 (``meta.json`` ``weights_dtype``) so that two or three networks fit under the 30 MB
a checkpoint may weigh; :func:`geovision.checkpoint.load_checkpoint` computes in float32.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from geovision.checkpoint import load_checkpoint, write_meta

from ..common.provenance import git_commit

#: Keys every member's meta.json must agree on.
SHARED_KEYS = ("task", "input_shape", "normalization")


class JoinedEmbedding(torch.nn.Module):
    """Several embedding networks as one: (N, 3, H, W) float32 -> (N, sum D_i) float32, unit rows."""

    def __init__(self, members: list[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.scale = 1.0 / math.sqrt(len(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.members], 1) * self.scale


def joined_meta(metas: list[dict], folders: list[Path], dim: int, command: str) -> dict:
    """The joined checkpoint's ``meta.json``: the first member's preprocessing, every member's
    provenance under ``members``; the served ranking (``photoid``) is set later by
    :mod:`train.whales.fusion` ``--write-meta``."""
    first = metas[0]
    names = " + ".join(m["name"] for m in metas)
    keep = ("name", "version", "architecture", "pretrained", "command", "git_commit", "training", "metrics", "data")
    return {
        **{k: first[k] for k in ("task", "input_shape", "resize", "normalization", "data") if k in first},
        "name": "whale-joined-" + "-".join(m["name"].rsplit("-", 1)[-1] for m in metas),
        "version": time.strftime("%Y%m%d", time.gmtime()),
        "architecture": f"{len(metas)} fine-tuned embeddings joined ({names}): each L2-normalised, concatenated "
                        f"and scaled by 1/sqrt({len(metas)}), so the cosine is the mean of the members' cosines "
                        "(train.whales.join)",
        "pretrained": [m.get("pretrained") for m in metas],
        "output": f"L2-normalised embedding (N, {dim}); cosine similarity = inner product",
        "embedding_dim": dim,
        "weights_dtype": "float16",
        "new_whale_threshold": first.get("new_whale_threshold", 0.7),   # replaced by train.whales.fusion --write-meta
        "new_whale_threshold_source": "the first member's, until train.whales.fusion --write-meta measures the joined one",
        "metrics": {},
        "members": [{"folder": str(f), **{k: m[k] for k in keep if k in m}} for f, m in zip(folders, metas)],
        "command": command,
        "git_commit": git_commit(),
    }


def join_checkpoints(folders: list[Path], output: Path, command: str = "") -> dict:
    """Write ``output/model.pt`` (the :class:`JoinedEmbedding` of the members, scripted, float16
    weights) and ``output/meta.json``; returns the meta.

    Raises:
        ValueError: if the members disagree on the task, input shape or normalisation, or the
            float16 copy's embeddings differ from the float32 ones by more than 0.01 cosine.
    """
    ckpts = [load_checkpoint(f, torch.device("cpu")) for f in folders]
    for key in SHARED_KEYS:
        if any(c.meta[key] != ckpts[0].meta[key] for c in ckpts):
            raise ValueError(f"the members' meta.json disagree on {key!r}")
    module = torch.jit.script(JoinedEmbedding([c.module for c in ckpts])).eval()
    example = torch.randn(4, *ckpts[0].meta["input_shape"])
    with torch.inference_mode():
        exact = module(example)
    output.mkdir(parents=True, exist_ok=True)
    module.half().save(str(output / "model.pt"))
    meta = joined_meta([c.meta for c in ckpts], folders, int(exact.shape[1]), command)
    write_meta(output, meta)
    with torch.inference_mode():
        stored = load_checkpoint(output, torch.device("cpu")).module(example)
    if float((stored * exact).sum(1).min()) < 0.99:
        raise ValueError("the float16 copy of the joined model gives other embeddings")
    return meta


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the first exported embedding folder")
    parser.add_argument("--also", type=Path, nargs="+", required=True, help="more exported embedding folders")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    command = "python -m train.whales.join " + " ".join(
        f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items())
    meta = join_checkpoints([args.model, *args.also], args.output, command)
    print(json.dumps({k: meta[k] for k in ("name", "embedding_dim", "weights_dtype")}),
          f"{(args.output / 'model.pt').stat().st_size / 1e6:.1f} MB")
    return meta


if __name__ == "__main__":
    main()
