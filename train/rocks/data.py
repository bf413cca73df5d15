"""Geological Image Similarity data: the image list, loading at the model size and the fixed split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 28   #: the data set's images are 28x28 RGB
SPLIT_FILE = Path(__file__).resolve().parent.parent / "splits" / "rocks_val_ids.txt"


def list_images(root: Path) -> tuple[list[str], list[str]]:
    """Relative paths ``<class>/<file>`` of every image under ``root`` and their class names."""
    paths = sorted(str(p.relative_to(root)) for p in Path(root).glob("*/*")
                   if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    return paths, [p.split("/")[0] for p in paths]


def load_rgb(path: Path, size: int = SIZE) -> np.ndarray:
    """uint8 (size, size, 3) RGB array of an image file, resized when needed."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(im)


def make_split(paths: list[str], labels: list[str], val_fraction: float = 0.1, seed: int = 42) -> list[str]:
    """Stratified validation paths (``val_fraction`` of each class)."""
    rng = np.random.default_rng(seed)
    val = []
    for label in sorted(set(labels)):
        members = [p for p, lab in zip(paths, labels) if lab == label]
        rng.shuffle(members)
        val += members[: round(len(members) * val_fraction)]
    return sorted(val)
