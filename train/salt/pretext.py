"""Self-supervised pretraining of the salt U-Net's encoder on unlabelled seismic tiles.

After Monteiro, Oliveira and dos Santos, "Self-Supervised Learning for Seismic Image
Segmentation from Few-Labeled Samples", IEEE GRSL 2022: the encoder first learns a pretext
task on unlabelled tiles (TGS ``test/images``, 4,000 tiles), then the whole U-Net is fine-tuned
on the labelled ones.

* ``rotation``: each tile is rotated by one of -8, -4, 0, 4, 8 degrees and centre-cropped to the
  largest square without empty pixels (the same crop for every angle, so the size gives nothing
  away); the network names the angle (5 classes).
* ``jigsaw`` (Noroozi and Favaro, ECCV 2016): a 99x99 crop is cut into 3x3 cells of 33 px and a
  27x27 patch is taken at a random place in each cell (gaps, so edges cannot be matched); the
  patches are shuffled by one of a fixed set of permutations chosen greedily for large Hamming
  distance; the network, applied to each patch with shared weights, names the permutation.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image
from tqdm import tqdm

from . import data as sd
from .model import build_unet

log = logging.getLogger(__name__)
ANGLES = (-8, -4, 0, 4, 8)
METHODS = ("none", "rotation", "jigsaw")


def inner_square(size: int, max_angle: float) -> int:
    """Side of the largest axis-aligned square inside a ``size`` square rotated by ``max_angle``."""
    a = math.radians(abs(max_angle))
    return int(math.floor(size / (math.cos(a) + math.sin(a))))


def jigsaw_permutations(n: int = 30, seed: int = 0, pool: int = 5000) -> np.ndarray:
    """``n`` permutations of 9 (int64 (n, 9)), the first the identity, each next one the candidate
    of a random pool whose smallest Hamming distance to those chosen is largest."""
    rng = np.random.default_rng(seed)
    candidates = np.array([rng.permutation(9) for _ in range(pool)])
    chosen = [np.arange(9)]
    dist = (candidates != chosen[0]).sum(1)
    for _ in range(n - 1):
        best = int(dist.argmax())
        chosen.append(candidates[best])
        dist = np.minimum(dist, (candidates != candidates[best]).sum(1))
    return np.stack(chosen)


def load_unlabelled(folder: Path, limit: int | None = None) -> np.ndarray:
    """uint8 (N, 101, 101) grey tiles of a folder of PNGs (sorted names)."""
    paths = sorted(Path(folder).glob("*.png"))[:limit]
    return np.stack([np.asarray(Image.open(p).convert("L")) for p in paths])


def rotation_batch(tiles: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs float (N, 1, 128, 128) in [0, 1] before normalisation, angle class (N,)) of tiles
    float (N, 1, 101, 101)."""
    labels = torch.randint(len(ANGLES), (len(tiles),), generator=gen)
    side = inner_square(sd.TILE, max(abs(a) for a in ANGLES))
    out = []
    for tile, label in zip(tiles, labels):
        rotated = TF.rotate(tile, float(ANGLES[int(label)]), interpolation=TF.InterpolationMode.BILINEAR)
        cropped = TF.center_crop(rotated, [side, side])
        out.append(F.interpolate(cropped[None], size=(sd.TILE, sd.TILE), mode="bilinear", align_corners=False)[0])
    return sd.pad_tiles(torch.stack(out)), labels


JIGSAW_CELL, JIGSAW_PATCH, JIGSAW_INPUT = 33, 27, 32


def jigsaw_batch(tiles: torch.Tensor, perms: np.ndarray, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(patches float (N, 9, 1, 32, 32), permutation class (N,)) of tiles float (N, 1, 101, 101)."""
    n = len(tiles)
    labels = torch.randint(len(perms), (n,), generator=gen)
    offsets = torch.randint(0, sd.TILE - 3 * JIGSAW_CELL + 1, (n, 2), generator=gen)
    jitter = torch.randint(0, JIGSAW_CELL - JIGSAW_PATCH + 1, (n, 9, 2), generator=gen)
    out = torch.empty(n, 9, 1, JIGSAW_PATCH, JIGSAW_PATCH)
    for i in range(n):
        order = perms[int(labels[i])]
        for slot, cell in enumerate(order):
            r, c = divmod(int(cell), 3)
            y = int(offsets[i, 0]) + r * JIGSAW_CELL + int(jitter[i, cell, 0])
            x = int(offsets[i, 1]) + c * JIGSAW_CELL + int(jitter[i, cell, 1])
            out[i, slot] = tiles[i, :, y:y + JIGSAW_PATCH, x:x + JIGSAW_PATCH]
    out = F.interpolate(out.view(n * 9, 1, JIGSAW_PATCH, JIGSAW_PATCH), size=(JIGSAW_INPUT, JIGSAW_INPUT),
                        mode="bilinear", align_corners=False)
    return out.view(n, 9, 1, JIGSAW_INPUT, JIGSAW_INPUT), labels


class RotationNet(nn.Module):
    """U-Net encoder + global pool + linear: angle logits (N, 5) of (N, 1, 128, 128)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_channels[-1], len(ANGLES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)[-1].mean(dim=(2, 3)))


class JigsawNet(nn.Module):
    """Shared U-Net encoder per patch, concatenated patch features, MLP: permutation logits (N, P)."""

    def __init__(self, encoder: nn.Module, n_perms: int):
        super().__init__()
        self.encoder = encoder
        c = encoder.out_channels[-1]
        self.patch = nn.Sequential(nn.Linear(c, 128), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Linear(9 * 128, 256), nn.ReLU(inplace=True), nn.Linear(256, n_perms))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        n = patches.shape[0]
        f = self.encoder(patches.flatten(0, 1))[-1].mean(dim=(2, 3))
        return self.head(self.patch(f).view(n, -1))


def pretrain_encoder(method: str, unlabelled: Path, steps: int, batch_size: int = 32, lr: float = 1e-3,
                     seed: int = 42, limit: int | None = None) -> tuple[dict, dict]:
    """Train the pretext task; returns (encoder state_dict, {"accuracy": last-100-steps accuracy,
    "mean", "std"}). Raises ValueError for an unknown method."""
    if method not in ("rotation", "jigsaw"):
        raise ValueError(f"unknown pretext task {method!r}; use rotation or jigsaw")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    tiles = load_unlabelled(unlabelled, limit)
    mean, std = float(tiles.mean() / 255), float(tiles.std() / 255)
    encoder = build_unet().encoder
    perms = jigsaw_permutations() if method == "jigsaw" else None
    net = RotationNet(encoder) if method == "rotation" else JigsawNet(encoder, len(perms))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    hits: list[float] = []
    bar = tqdm(range(steps), desc=f"pretext {method}", mininterval=10)
    for _ in bar:
        idx = torch.randint(len(tiles), (batch_size,), generator=gen)
        x = torch.from_numpy(tiles[idx.numpy()]).float().div(255).unsqueeze(1)
        x = torch.where((torch.rand(batch_size, generator=gen) < 0.5).view(-1, 1, 1, 1), x.flip(-1), x)
        inputs, labels = rotation_batch(x, gen) if method == "rotation" else jigsaw_batch(x, perms, gen)
        logits = net((inputs - mean) / std)
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hits.append(float((logits.argmax(1) == labels).float().mean()))
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{np.mean(hits[-50:]):.2f}", refresh=False)
    chance = 1 / (len(ANGLES) if method == "rotation" else len(perms))
    info = {"accuracy": round(float(np.mean(hits[-100:])), 4), "chance": round(chance, 4), "steps": steps,
            "batch_size": batch_size, "mean": mean, "std": std, "tiles": len(tiles)}
    log.info("pretext %s: %s", method, info)
    return net.encoder.state_dict(), info


def subset_fraction(n: int, has_salt: np.ndarray, fraction: float, seed: int = 42) -> np.ndarray:
    """Indices of ``fraction`` of ``n`` labelled tiles, stratified by salt / no salt (at least 2)."""
    if fraction >= 1:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    out = []
    for flag in (False, True):
        members = np.flatnonzero(has_salt == flag)
        rng.shuffle(members)
        out.append(members[:max(1, round(len(members) * fraction))])
    return np.sort(np.concatenate(out))

