"""Click-conditioned salt U-Net (interactive refinement): train, evaluate with the benchmark's
click simulation, export.

The network is the released salt U-Net with three more input channels, in the manner of RITM
(Sofiiuk et al., "Reviving Iterative Training with Mask Guidance for Interactive Segmentation",
2021): the released model's mask (the answer the user is correcting) and two click maps (disks of
:data:`geovision.refine.CLICK_MAP_RADIUS` px, "salt" and "not salt"). The new channels' stem
filters start at zero, so before training the network is the released one.

The served request is stateless (all clicks sent each time, the released answer recomputed), so
training sees exactly that: the released mask and every click so far. The clicks are simulated as
the benchmarks do (:func:`geovision.refine.next_click`), iteratively: click k is made on the
network's own answer to clicks 1..k-1 (no gradient), as in RITM's iterative training.

Usage: ``python -m train.salt.clicks --data ../shared/data/tgs-salt --release models/salt
--run-dir runs/salt_clicks --output runs/salt_clicks/export --epochs 12``
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from geovision.checkpoint import read_meta, write_meta
from geovision.metrics import iou, tgs_metric
from geovision.refine import Click, click_maps, force_clicks, next_click

from ..common.checkpoints import optimiser_step, resume_run, save_run
from ..common.provenance import git_commit
from ..common.runtime import start_run, warmup_cosine
from . import data as sd
from .evaluate import load_split
from .losses import lovasz_hinge
from .model import unet_for
from .pseudo import load_weights

log = logging.getLogger(__name__)
THRESHOLD = 0.5          #: salt where the click model's probability exceeds this
EVAL_CLICKS = (0, 1, 2, 3, 5)


def widen_stem(net: nn.Module, extra: int = 3) -> nn.Module:
    """Give the U-Net's first convolution ``extra`` more input channels with zero filters (in place)."""
    conv = net.encoder.model.conv_stem
    weight = conv.weight.data
    conv.weight = nn.Parameter(torch.cat([weight, weight.new_zeros(weight.shape[0], extra, *weight.shape[2:])], 1))
    conv.in_channels = weight.shape[1] + extra
    return net


class ClickPredictor(nn.Module):
    """Served form: float32 (N, 4, 128, 128) [normalised grey, released mask 0/1, salt clicks,
    not-salt clicks] -> salt probability float32 (N, 1, 128, 128), horizontal-flip TTA inside."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        logits, _ = self.net(torch.cat([x, x.flip(-1)], 0))
        return (torch.sigmoid(logits[:n]) + torch.sigmoid(logits[n:]).flip(-1)) * 0.5


def model_input(grey: torch.Tensor, first: torch.Tensor, maps: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(N, 4, 128, 128) network input from grey (N, 1, 101, 101) in [0, 1], the released mask
    (N, 1, 101, 101) 0/1 and click maps (N, 2, 101, 101): grey and mask reflect-padded, clicks zero-padded."""
    pad = (sd.PAD_BEFORE, sd.PAD_AFTER, sd.PAD_BEFORE, sd.PAD_AFTER)
    return torch.cat([sd.pad_tiles((grey - mean) / std), sd.pad_tiles(first), F.pad(maps, pad)], 1)


def answer(net: nn.Module, grey: torch.Tensor, first: torch.Tensor, clicks: list[list[Click]],
           mean: float, std: float, bf16: bool = True) -> np.ndarray:
    """bool (N, 101, 101) masks of the click network for each tile's clicks (no gradient)."""
    maps = torch.from_numpy(np.stack([click_maps(c, (sd.TILE, sd.TILE)) for c in clicks]))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits, _ = net(model_input(grey, first, maps, mean, std).contiguous(memory_format=torch.channels_last))
    probs = sd.crop_tiles(torch.sigmoid(logits.float()))[:, 0].numpy()
    return np.stack([force_clicks(p > THRESHOLD, c) for p, c in zip(probs, clicks)])


def simulate(net: nn.Module, grey: torch.Tensor, first: torch.Tensor, truth: np.ndarray, n_clicks: int,
             mean: float, std: float, last_answer: bool = True) -> tuple[list[list[Click]], list[np.ndarray]]:
    """The benchmark protocol for ``n_clicks`` clicks: returns each tile's clicks and the masks after
    0..n_clicks clicks (the first is the released mask; without ``last_answer`` the answer to the
    last click is not computed: training needs only the clicks)."""
    masks = [first[:, 0].numpy() > 0.5]
    clicks: list[list[Click]] = [[] for _ in range(len(truth))]
    for k in range(n_clicks):
        for i, (pred, gt) in enumerate(zip(masks[-1], truth)):
            click = next_click(pred, gt)
            if click is not None:
                clicks[i].append(click)
        if k == n_clicks - 1 and not last_answer:
            break
        if not any(clicks):
            masks.append(masks[-1])
            continue
        redrawn = answer(net, grey, first, clicks, mean, std)
        # a tile without a click keeps its answer (served: no click is the released answer)
        masks.append(np.where(np.array([bool(c) for c in clicks])[:, None, None], redrawn, masks[-1]))
    return clicks, masks


def evaluate(net: nn.Module, grey_u8: np.ndarray, first: np.ndarray, truth: np.ndarray, mean: float, std: float,
             batch: int = 120) -> dict:
    """TGS metric and mean IoU of tiles with salt after each of :data:`EVAL_CLICKS` clicks."""
    net.eval()
    after: dict[int, list[np.ndarray]] = {n: [] for n in EVAL_CLICKS}
    for i in range(0, len(truth), batch):
        grey = torch.from_numpy(grey_u8[i:i + batch]).float().div(255).unsqueeze(1)
        f = torch.from_numpy(first[i:i + batch]).float().unsqueeze(1)
        _, masks = simulate(net, grey, f, truth[i:i + batch].astype(bool), max(EVAL_CLICKS), mean, std)
        for n in EVAL_CLICKS:
            after[n].append(masks[n])
    salty = truth.reshape(len(truth), -1).any(1)
    out = {}
    for n, parts in after.items():
        pred = np.concatenate(parts)
        out[f"tgs_{n}"] = round(tgs_metric(truth, pred), 4)
        out[f"miou_{n}"] = round(float(np.mean([iou(t, p) for t, p in zip(truth[salty], pred[salty])])), 4)
    return out


def released_masks(release: Path, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """float32 (N, 101, 101) salt probability of the released model (its TorchScript, as served)."""
    meta = read_meta(release)
    model = torch.jit.load(str(release / "model.pt"), map_location="cpu").eval()
    mean, std = meta["normalization"]["mean"][0], meta["normalization"]["std"][0]
    out = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch]).float().div(255).unsqueeze(1)
            out.append(sd.crop_tiles(model(sd.pad_tiles((x - mean) / std)).float())[:, 0].numpy())
    return np.concatenate(out)


def perturb(first: torch.Tensor, truth: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Released masks with a share of them replaced, so the network meets larger errors than the
    released model makes on its own training tiles: 20 % empty, 10 % the truth dilated and
    10 % eroded by 2-6 px."""
    out = first.clone()
    draw = torch.rand(len(first), generator=gen)
    k = 2 * int(torch.randint(2, 7, (1,), generator=gen)) + 1
    dilated = F.max_pool2d(truth, k, 1, k // 2)
    eroded = -F.max_pool2d(-truth, k, 1, k // 2)
    out[draw < 0.2] = 0
    out[(draw >= 0.2) & (draw < 0.3)] = dilated[(draw >= 0.2) & (draw < 0.3)]
    out[(draw >= 0.3) & (draw < 0.4)] = eroded[(draw >= 0.3) & (draw < 0.4)]
    return out


def train_step(net, ema, opt, sched, x_u8, first_p, y_u8, threshold, mean, std, gen, max_clicks) -> float:
    """One optimiser step on a batch, with iteratively simulated clicks (1..max_clicks)."""
    x = torch.from_numpy(x_u8).float().div(255).unsqueeze(1)
    y = torch.from_numpy(y_u8).float().unsqueeze(1)
    soft = torch.from_numpy(first_p).unsqueeze(1)
    x, y, soft = sd.augment(x, y, gen, soft=soft)
    first = perturb((soft > threshold).float(), y, gen)
    n_clicks = random.randint(1, max_clicks)
    net.eval()
    clicks, _ = simulate(net, x, first, y[:, 0].numpy() > 0.5, n_clicks, mean, std, last_answer=False)
    net.train()
    maps = torch.from_numpy(np.stack([click_maps(c, (sd.TILE, sd.TILE)) for c in clicks]))
    inp = model_input(x, first, maps, mean, std).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = net(inp)
    logits = sd.crop_tiles(logits).float()
    loss = F.binary_cross_entropy_with_logits(logits, y)
    salty = y.flatten(1).amax(1) > 0
    if salty.any():
        loss = loss + lovasz_hinge(logits[salty], y[salty])
    return optimiser_step(loss, opt, sched, ema, net)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--release", default="models/salt", help="the released salt checkpoint folder it starts from")
    ap.add_argument("--run-dir", default="runs/salt_clicks")
    ap.add_argument("--output", default="runs/salt_clicks/export")
    ap.add_argument("--holdout", default="train/splits/salt_untouched_ids.txt")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--max-clicks", type=int, default=5)
    ap.add_argument("--eval-every", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dry-run", action="store_true", help="a few steps on a few tiles, then export")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    start_run(42, args.threads, "cpu", args.run_dir, args.output)
    random.seed(42)
    run_dir, out_dir, release = Path(args.run_dir), Path(args.output), Path(args.release)
    meta = read_meta(release)
    mean, std, threshold = meta["normalization"]["mean"][0], meta["normalization"]["std"][0], meta["threshold"]
    tr_x, tr_y, va_x, va_y = load_split(args.data, args.dry_run, args.holdout)
    tr_p, va_first = released_masks(release, tr_x), released_masks(release, va_x) > threshold
    state = load_weights(release / "model.pt")
    net = unet_for(state)
    net.load_state_dict(state)
    net = widen_stem(net)
    net = net.to(memory_format=torch.channels_last)
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.995), use_buffers=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    if args.dry_run:
        args.batch_size = min(args.batch_size, max(1, len(tr_x) // 2))
    steps = 2 if args.dry_run else len(tr_x) // args.batch_size
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps * args.epochs, steps))
    modules, ckpt = {"model": net, "ema": ema}, run_dir / "last.pt"
    start, best, minutes = 0, {"tgs_3": -1.0}, 0.0
    resumed = resume_run(ckpt, modules, opt, sched) if args.resume else None
    if resumed:
        start, best, minutes = resumed
    gen = torch.Generator().manual_seed(42)
    started = time.time() - minutes * 60
    for epoch in range(start, args.epochs):
        order = torch.randperm(len(tr_x), generator=gen).numpy()
        total = 0.0
        for s in tqdm(range(steps), desc=f"clicks epoch {epoch + 1}/{args.epochs}", mininterval=20):
            idx = order[s * args.batch_size:(s + 1) * args.batch_size]
            total += train_step(net, ema, opt, sched, tr_x[idx], tr_p[idx], tr_y[idx], threshold, mean, std,
                                gen, args.max_clicks)
        row = {"epoch": epoch + 1, "loss": round(total / steps, 4), "minutes": round((time.time() - started) / 60, 1)}
        if (epoch + 1) % args.eval_every == 0 or epoch == args.epochs - 1:
            row.update(evaluate(ema.module, va_x, va_first, va_y.astype(bool), mean, std))
            if row["tgs_3"] > best["tgs_3"]:
                best = dict(row)
                export(ema.module, out_dir, best, meta, args, len(tr_x), len(va_x))
        log.info("epoch %d: %s", epoch + 1, row)
        with open(run_dir / "metrics.csv", "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row) if "tgs_0" in row else
                                    ["epoch", "loss", "minutes"] + [f"{m}_{n}" for n in EVAL_CLICKS for m in ("tgs", "miou")])
            if fh.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
        save_run(ckpt, modules, opt, sched, epoch, best, row["minutes"])
    return json.loads((out_dir / "meta.json").read_text())


def export(net: nn.Module, out_dir: Path, best: dict, release_meta: dict, args, n_train: int, n_val: int) -> None:
    """Write the click model's TorchScript ``model.pt`` and ``meta.json`` (task ``salt_clicks``)."""
    predictor = ClickPredictor(copy.deepcopy(net).float().to(memory_format=torch.contiguous_format)).eval()
    with torch.inference_mode():
        traced = torch.jit.trace(predictor, torch.randn(2, 4, sd.PADDED, sd.PADDED), check_trace=False)
    traced.save(str(out_dir / "model.pt"))
    norm = release_meta["normalization"]
    write_meta(out_dir, {
        "task": "salt_clicks",
        "name": "salt-clicks-unet-efficientnet-lite0",
        "version": time.strftime("%Y%m%d", time.gmtime()) + ("-dryrun" if args.dry_run else ""),
        "architecture": "the released salt U-Net with 3 more input channels (released mask, salt and not-salt "
                        "click disks of 5 px), RITM-style; hflip TTA inside",
        "starts_from": f"{release_meta['name']} {release_meta['version']}",
        "input_shape": [4, sd.PADDED, sd.PADDED],
        "input_channels": ["grey (normalised)", "released mask 0/1", "salt clicks", "not-salt clicks"],
        "tile_size": sd.TILE,
        "padding": {"mode": "reflect (grey, mask); zero (clicks)", "before": sd.PAD_BEFORE, "after": sd.PAD_AFTER},
        "normalization": {"scale": norm["scale"], "mean": norm["mean"] + [0.0] * 3, "std": norm["std"] + [1.0] * 3},
        "output": "salt probability (N, 1, 128, 128) after the clicks",
        "threshold": THRESHOLD,
        "runtime": {"cpu_bf16": True, "checked_with": "the validation figures are answers under bfloat16 autocast "
                                                     "(train.salt.clicks.answer)"},
        "metrics": {"val_tiles": n_val, "epoch": best["epoch"],
                    **{f"val_{k}": v for k, v in best.items() if k.startswith(("tgs_", "miou_"))}},
        "data": {"dataset": "TGS Salt Identification (Kaggle 2018), train/", "train_tiles": n_train,
                 "val_split": "train/splits/salt_val_ids.txt", "holdout": args.holdout},
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                     "max_clicks": args.max_clicks, "minutes": best["minutes"], "device": "cpu",
                     "threads": torch.get_num_threads(), "torch": torch.__version__},
        "command": "python -m train.salt.clicks " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                             if v not in (False, None) and v is not True),
        "git_commit": git_commit(),
    })


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    main()
