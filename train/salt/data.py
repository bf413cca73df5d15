"""TGS Salt data: loading, the fixed validation split and batch augmentation."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger(__name__)

TILE = 101          #: TGS tiles are 101x101 pixels.
PADDED = 128        #: Tiles are reflect-padded to 128x128 (divisible by 2**5).
PAD_BEFORE = (PADDED - TILE) // 2
PAD_AFTER = PADDED - TILE - PAD_BEFORE
SPLIT_FILE = Path(__file__).resolve().parent.parent / "splits" / "salt_val_ids.txt"


def read_ids(data_dir: Path) -> list[str]:
    """Tile ids listed in ``train.csv`` of a TGS folder, in file order."""
    with open(Path(data_dir) / "train.csv", newline="") as fh:
        return [row["id"] for row in csv.DictReader(fh)]


def load_tiles(data_dir: Path, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Load images and masks as uint8 arrays of shape (N, 101, 101).

    ``data_dir`` holds ``train.csv`` and either ``train/images``, ``train/masks`` (Kaggle
    layout) or ``images``, ``masks`` directly.

    Images are grayscale 0..255 (first channel of the RGB PNGs); masks are 0/1.
    """
    data_dir = Path(data_dir)
    if (data_dir / "train" / "images").is_dir():  # the Kaggle layout: train.csv beside train/
        data_dir = data_dir / "train"
    images = np.stack([np.asarray(Image.open(data_dir / "images" / f"{i}.png").convert("L")) for i in ids])
    masks = np.stack([(np.asarray(Image.open(data_dir / "masks" / f"{i}.png").convert("L")) > 127) for i in ids])
    return images, masks.astype(np.uint8)


def make_split(ids: list[str], masks: np.ndarray, val_fraction: float = 0.1, seed: int = 42) -> list[str]:
    """Pick validation ids stratified by salt coverage (empty, then ten coverage bins)."""
    coverage = masks.reshape(len(ids), -1).mean(1)
    strata = np.where(coverage == 0, -1, np.minimum((coverage * 10).astype(int), 9))
    rng = np.random.default_rng(seed)
    val: list[str] = []
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        rng.shuffle(members)
        val += [ids[i] for i in members[: round(len(members) * val_fraction)]]
    return sorted(val)


def read_split(path: Path = SPLIT_FILE) -> list[str]:
    """Validation ids committed with the project, one per line."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def pad_tiles(x: torch.Tensor) -> torch.Tensor:
    """Reflect-pad (N, C, 101, 101) tiles to (N, C, 128, 128)."""
    return F.pad(x, (PAD_BEFORE, PAD_AFTER, PAD_BEFORE, PAD_AFTER), mode="reflect")


def crop_tiles(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pad_tiles`: the central 101x101 region."""
    return x[..., PAD_BEFORE:PAD_BEFORE + TILE, PAD_BEFORE:PAD_BEFORE + TILE]


def random_geometry(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tile random horizontal flips (bool (n,)) and affine matrices (float (n, 2, 3)): zoom
    1.0-1.2 and shift up to 8 % on half of the tiles, identity on the others."""
    flip = torch.rand(n, generator=generator) < 0.5
    use = (torch.rand(n, generator=generator) < 0.5).float()
    scale = 1.0 - use * 0.2 * torch.rand(n, generator=generator)
    shift = use.unsqueeze(1) * (torch.rand(n, 2, generator=generator) - 0.5) * 0.16
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    return flip, theta


def apply_geometry(x: torch.Tensor, flip: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Flip then warp float (N, C, H, W) by :func:`random_geometry`'s draws (bilinear, reflected borders)."""
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator,
            soft: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Random horizontal flip, scale/shift and brightness/contrast on a batch.

    Args:
        images: float (N, 1, 101, 101) in [0, 1]; masks: float (N, 1, 101, 101) in {0, 1};
        soft: optional float (N, 1, 101, 101) soft targets (e.g. a teacher's probabilities),
            warped like the masks but not re-binarised.
    Returns:
        Augmented ``(images, masks)`` (masks stay binary), plus ``soft`` when given.
    """
    n = images.shape[0]
    flip, theta = random_geometry(n, generator)
    images = apply_geometry(images, flip, theta)
    masks = (apply_geometry(masks, flip, theta) > 0.5).float()
    gain = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.2
    bias = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.1
    images = (images * gain + bias).clamp(0.0, 1.0)
    if soft is None:
        return images, masks
    return images, masks, apply_geometry(soft, flip, theta).clamp(0.0, 1.0)
