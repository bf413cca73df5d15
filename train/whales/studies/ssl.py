"""Self-supervised pretraining of the whale embedding network (SimCLR), measured by retrieval.

    python -m train.whales.studies.ssl --data ../shared/data/whales --epochs 60 --run-dir runs/whales_ssl [--resume]

SimCLR (Chen et al., ICML 2020): two random views of each gallery photo (resized crop of 40-100 %
of the letterboxed 256x96 input, rotation +-10 deg, brightness/contrast/gamma jitter, grey, blur)
pass through :class:`~train.whales.model.WhaleNet` and a projection MLP; the NT-Xent loss pulls
the two views of a photo together against the other photos of the batch. No labels are used:
only the gallery photos of the validation split (its queries are never seen).

Every ``eval_every`` epochs the L2-normalised embedding (before the projection) ranks the
gallery's individuals for each known validation query (best photo per individual) and the
top-1/5/20 rates go to ``metrics.csv``; ``encoder.pt`` keeps the network's weights for
``python -m train whales --init-from RUN/encoder.pt`` (ArcFace fine-tuning).
"""
from __future__ import annotations

import argparse
import csv
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from tqdm import tqdm

from geovision.metrics import NEW_WHALE
from geovision.whales import rank_individuals

from ...common.checkpoints import resume_run, save_run
from ...common.runtime import start_run, warmup_cosine
from ..loop import _load, embed
from ..model import WhaleNet

log = logging.getLogger(__name__)


def views(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random SimCLR view of each photo of a float batch (N, 3, H, W) in [0, 1], same shape."""
    n, _, h, w = x.shape
    out = torch.empty_like(x)
    r = torch.rand(n, 8, generator=gen)
    for i in range(n):
        area = 0.4 + 0.6 * float(r[i, 0])
        ch, cw = max(8, round(h * area ** 0.5)), max(8, round(w * area ** 0.5))
        top, left = int(r[i, 1] * (h - ch)), int(r[i, 2] * (w - cw))
        crop = TF.resized_crop(x[i], top, left, ch, cw, [h, w], antialias=True)
        crop = TF.rotate(crop, float(r[i, 3] * 20 - 10))
        if r[i, 4] < 0.5:
            crop = TF.gaussian_blur(crop, [5, 5], [0.1 + 1.5 * float(r[i, 5])])
        out[i] = crop
    grey = (torch.rand(n, 1, 1, 1, generator=gen) < 0.5).float()
    out = grey * out.mean(1, keepdim=True).expand_as(out) + (1 - grey) * out
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.8)
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen)
    brightness = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4
    out = out.clamp(1e-4, 1).pow(gamma)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean + brightness).clamp(0, 1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent loss of two (N, D) projections, row i of each being views of the same photo."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    n = len(z1)
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


def retrieval(emb_q: np.ndarray, emb_g: np.ndarray, gallery_ids: np.ndarray, truths: list[str]) -> dict:
    """Top-1/5/20 rates of the known queries: the truth among the best ``k`` individuals."""
    known = [i for i, t in enumerate(truths) if t != NEW_WHALE]
    sims = emb_q[known] @ emb_g.T
    ranks = [[w for w, _ in rank_individuals(row, gallery_ids, limit=20)] for row in sims]
    return {f"top{k}_known": round(float(np.mean([truths[i] in r[:k] for i, r in zip(known, ranks)])), 4)
            for k in (1, 5, 20)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--run-dir", default="runs/whales_ssl")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = start_run(args.seed, args.threads, "cpu", args.run_dir)
    run_dir = Path(args.run_dir)
    cfg = argparse.Namespace(data=args.data, dry_run=False, seed=args.seed)
    train_rows, queries, tr_x, va_x = _load(cfg)
    gallery_ids = np.array([r["Id"] for r in train_rows])
    truths = [q["truth"] for q in queries]
    mean = torch.tensor(tr_x.reshape(-1, 3).mean(0) / 255, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(tr_x.reshape(-1, 3).std(0) / 255, dtype=torch.float32).view(1, 3, 1, 1)

    net = WhaleNet(512, args.width)
    proj = nn.Sequential(nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Linear(512, 128))
    opt = torch.optim.AdamW(list(net.parameters()) + list(proj.parameters()), lr=args.lr, weight_decay=1e-4)
    steps = len(tr_x) // args.batch_size
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, args.epochs * steps, 2 * steps))
    ckpt, modules = run_dir / "last.pt", {"net": net, "proj": proj}
    start_epoch, minutes_before = 0, 0.0
    resumed = resume_run(ckpt, modules, opt, sched, device) if args.resume else None
    if resumed:
        start_epoch, _, minutes_before = resumed
    if start_epoch == 0:
        log.info("before training: %s", retrieval(embed(net, va_x, mean, std, device),
                                                  embed(net, tr_x, mean, std, device), gallery_ids, truths))
    gen = torch.Generator().manual_seed(args.seed + start_epoch)
    started = time.time() - minutes_before * 60
    for epoch in range(start_epoch, args.epochs):
        net.train()
        proj.train()
        order = torch.randperm(len(tr_x), generator=gen).numpy()
        total = 0.0
        for step in tqdm(range(steps), desc=f"simclr epoch {epoch + 1}/{args.epochs}", mininterval=10):
            x = torch.from_numpy(tr_x[order[step * args.batch_size:(step + 1) * args.batch_size]])
            x = x.permute(0, 3, 1, 2).float().div(255)
            v1, v2 = ((views(x, gen) - mean) / std), ((views(x, gen) - mean) / std)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nt_xent(proj(net(v1)), proj(net(v2)), args.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        row = {"epoch": epoch + 1, "loss": round(total / steps, 4), "lr": sched.get_last_lr()[0],
               "minutes": round((time.time() - started) / 60, 2)}
        if (epoch + 1) % args.eval_every == 0 or epoch == args.epochs - 1:
            row.update(retrieval(embed(net, va_x, mean, std, device), embed(net, tr_x, mean, std, device),
                                 gallery_ids, truths))
            torch.save(net.state_dict(), run_dir / "encoder.pt")
        log.info("epoch %s", row)
        with open(run_dir / "metrics.csv", "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["epoch", "loss", "lr", "minutes", "top1_known",
                                                    "top5_known", "top20_known"])
            if fh.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
        save_run(ckpt, modules, opt, sched, epoch, {}, row["minutes"])


if __name__ == "__main__":
    main()
