"""Combine snapshots of one salt training run: weight averaging or a prediction ensemble.

    python -m train.salt.snapshots --data ../shared/data/tgs-salt --members runs/salt/snap_*.pt \
        [--mode average|ensemble] [--export models/salt]

Each member is a checkpoint written by :func:`train.salt.loop.train_salt` (``last.pt`` or a copy;
its EMA weights are used) or an exported ``model.pt``. ``average`` averages the weights of the members (stochastic weight
averaging over the snapshots of a cosine cycle, Izmailov et al., UAI 2018: one model, the
same cost); ``ensemble`` averages the members' flip-TTA probabilities (snapshot ensembles,
Huang et al., ICLR 2017: cost grows with the members). Thresholds are tuned on the fixed
validation split as in training, the score is printed and, with ``--export``, the result is
written as ``model.pt`` + ``meta.json``.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import shlex
import sys
from pathlib import Path

import torch
import torch.nn as nn

from geovision.checkpoint import is_torchscript

from .config import SaltTrainConfig
from .evaluate import load_split, predict_tiles, tune_thresholds
from .export import ARCHITECTURE, export_salt
from .model import unet_for
from .pseudo import load_weights

log = logging.getLogger(__name__)


def load_ema(path: Path) -> tuple[nn.Module, int]:
    """(network in eval mode, 1-based epoch) of a training checkpoint (its EMA weights) or of an
    exported ``model.pt`` (epoch from the ``meta.json`` beside it, 0 when there is none)."""
    state = load_weights(path)
    net = unet_for(state)
    net.load_state_dict(state)
    meta = path.parent / "meta.json"
    if is_torchscript(path):
        epoch = json.loads(meta.read_text())["metrics"].get("epoch", 0) if meta.exists() else 0
    else:
        epoch = int(torch.load(path, map_location="cpu")["epoch"]) + 1
    return net.eval(), epoch


def _member_meta(path: Path) -> dict | None:
    """Validation metric and training record of an exported member (its ``meta.json``), else None."""
    meta = path.parent / "meta.json"
    if not is_torchscript(path) or not meta.exists():
        return None
    saved = json.loads(meta.read_text())
    return {"metrics": saved.get("metrics"), "training": saved.get("training"), "command": saved.get("command"),
            "git_commit": saved.get("git_commit")}


def average_weights(nets: list[nn.Module]) -> nn.Module:
    """A network whose floating-point parameters and buffers are the members' means."""
    out = copy.deepcopy(nets[0])
    states = [n.state_dict() for n in nets]
    merged = {k: (torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v)
              for k, v in states[0].items()}
    out.load_state_dict(merged)
    return out.eval()


class SnapshotEnsemble(nn.Module):
    """Mean of the members' outputs: ``(mask_logits, salt_logits)`` are averaged as probabilities
    and returned as logits, so :class:`train.salt.model.SaltPredictor` can wrap the ensemble."""

    def __init__(self, nets: list[nn.Module]):
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masks, salts = [], []
        for net in self.nets:
            m, s = net(x)
            masks.append(torch.sigmoid(m))
            salts.append(torch.sigmoid(s))
        m = torch.stack(masks).mean(0).clamp(1e-6, 1 - 1e-6)
        s = torch.stack(salts).mean(0).clamp(1e-6, 1 - 1e-6)
        return torch.logit(m), torch.logit(s)


def evaluate(net: nn.Module, data: str, holdout: str = "") -> dict:
    """Tuned validation TGS metric of ``net`` (flip TTA) on the fixed split (``holdout``: ids
    left out of the training part, as in the members' runs)."""
    tr_x, _, va_x, va_y = load_split(data, holdout=holdout)
    mean, std = float(tr_x.mean() / 255), float(tr_x.std() / 255)
    probs, salts = predict_tiles(net, va_x, mean, std, torch.device("cpu"))
    return {**tune_thresholds(probs, salts, va_y), "mean": mean, "std": std, "n_train": len(tr_x), "n_val": len(va_x)}


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m train.salt.snapshots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--members", nargs="+", required=True, type=Path)
    parser.add_argument("--mode", choices=["average", "ensemble"], default="average")
    parser.add_argument("--export", help="output folder (model.pt + meta.json)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--holdout", default="", help="ids the members never saw (their runs' --holdout)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = [load_ema(p) for p in args.members]
    member_meta = [_member_meta(p) for p in args.members]  # before --export may overwrite them
    nets, epochs = [n for n, _ in loaded], [e for _, e in loaded]
    net = average_weights(nets) if args.mode == "average" else SnapshotEnsemble(nets).eval()
    result = evaluate(net, args.data, args.holdout)
    log.info("%s of epochs %s: validation TGS metric %.4f (%s)", args.mode, epochs, result["tgs_metric"],
             {k: result[k] for k in ("threshold", "empty_threshold", "min_salt_pixels")})
    if args.export:
        command = "python -m train.salt.snapshots " + shlex.join(argv if argv is not None else sys.argv[1:])
        cfg = SaltTrainConfig(data=args.data, output=args.export, command=command, holdout=args.holdout)
        best = {k: result[k] for k in ("tgs_metric", "threshold", "empty_threshold", "min_salt_pixels")}
        best["epoch"] = max(epochs)
        Path(args.export).mkdir(parents=True, exist_ok=True)
        previous = Path(args.export) / "meta.json"
        training = json.loads(previous.read_text()).get("training", {}) if previous.exists() else {}
        combined = (f"prediction ensemble (mean probabilities) of {len(nets)} members, epochs {epochs}"
                    if args.mode == "ensemble" else f"average of the weights of epochs {epochs} (SWA)")
        architecture = (f"; prediction ensemble of {len(nets)} members (mean probabilities)" if args.mode == "ensemble"
                        else f"; weights averaged over {len(nets)} snapshots of the run (SWA)")
        export_salt(net, cfg, best, result["mean"], result["std"], result["n_train"], result["n_val"], 0.0,
                           torch.device("cpu"), extra={
                               "snapshots": {"mode": args.mode, "epochs": epochs,
                                             "members": [str(p) for p in args.members], "member_meta": member_meta},
                               "training": {**training, "snapshots": combined},
                               "architecture": ARCHITECTURE + architecture})
    return result


if __name__ == "__main__":
    main()
