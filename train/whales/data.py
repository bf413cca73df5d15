"""Beluga / humpback photo-ID training data: metadata, making the validation split, loading photos.

The data folder holds ``train.csv`` (``Image,Id``, Kaggle's humpback whale format),
optionally ``metadata.csv`` (adds ``encounter_id``, ``viewpoint``, ``date``) and the images
in ``images/`` (or beside the CSV). The pre-processing and the split's reading live in
:mod:`geovision.whales`, shared with the server.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from geovision import whales
from geovision.whales import INPUT_HEIGHT, INPUT_WIDTH, prepare_image

SPLIT_FILE = Path(__file__).resolve().parent.parent / "splits" / "whales_val.csv"


def read_rows(data: Path) -> list[dict]:
    """Rows of ``metadata.csv`` (or ``train.csv``) as dicts with at least ``Image``, ``Id`` and
    ``encounter_id`` (one encounter per image when the metadata has none)."""
    data = Path(data)
    path = data / "metadata.csv" if (data / "metadata.csv").exists() else data / "train.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row.setdefault("encounter_id", f"{row['Id']}-{row['Image']}")
    return rows


def read_extra_labels(path: Path) -> list[dict]:
    """Rows of a CSV of more training photos (``Image`` an absolute path, ``Id``; ``viewpoint`` and
    ``encounter_id`` optional), as :func:`read_rows` gives them. Raises FileNotFoundError for a
    listed photo that is missing."""
    with open(path, newline="") as fh:
        rows = [dict(r) for r in csv.DictReader(fh)]
    for row in rows:
        if not Path(row["Image"]).is_file():
            raise FileNotFoundError(f"{path}: {row['Image']} does not exist")
        row["viewpoint"] = row.get("viewpoint") or "top"
        row["encounter_id"] = row.get("encounter_id") or f"extra-{row['Image']}"
    return rows


def make_split(rows: list[dict], known_fraction: float = 0.35, new_share: float = 1 / 3,
               seed: int = 42) -> list[dict]:
    """Validation queries, split by encounter with whole individuals held out.

    * ``query_known``: for ``known_fraction`` of the individuals seen in at least two
      encounters, every image of one randomly chosen encounter (their other encounters stay
      in training and in the gallery).
    * ``query_new``: every image of whole individuals (never trained on, not in the gallery),
      drawn until they make ``new_share`` of all queries; their truth is ``new_whale``.

    Returns ``[{"Image", "Id", "role"}]`` sorted by image name.
    """
    rng = np.random.default_rng(seed)
    encounters: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        encounters[row["Id"]][row["encounter_id"]].append(row["Image"])
    multi = sorted(i for i, enc in encounters.items() if len(enc) >= 2)
    known = set(rng.choice(multi, size=round(len(multi) * known_fraction), replace=False).tolist())
    out = []
    for whale in sorted(known):
        enc = sorted(encounters[whale])
        chosen = enc[int(rng.integers(len(enc)))]
        out += [{"Image": im, "Id": whale, "role": "query_known"} for im in encounters[whale][chosen]]
    target_new = round(len(out) * new_share / (1 - new_share))
    others = [i for i in sorted(encounters) if i not in known]
    rng.shuffle(others)
    n_new = 0
    for whale in others:
        if n_new >= target_new:
            break
        images = [im for ims in encounters[whale].values() for im in ims]
        out += [{"Image": im, "Id": whale, "role": "query_new"} for im in images]
        n_new += len(images)
    return sorted(out, key=lambda r: r["Image"])


def write_split(split: list[dict], path: Path = SPLIT_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["Image", "Id", "role"])
        writer.writeheader()
        writer.writerows(split)


def read_split(path: Path = SPLIT_FILE) -> list[dict]:
    """The committed validation split (see :func:`geovision.whales.read_split`)."""
    return whales.read_split(path)


def load_images(folder: Path, names: list[str], progress: bool = True, size: tuple[int, int] = (INPUT_HEIGHT, INPUT_WIDTH),
                mirrored: list[bool] | None = None) -> np.ndarray:
    """uint8 (N, H, W, 3) inputs of the named image files, letterboxed to ``size`` (H, W).

    ``mirrored[i]`` flips photo i left-right first: right side views are mirrored so that every
    side view looks like a left one (the viewpoint convention of :mod:`geovision.photoid`)."""
    from tqdm import tqdm

    out = np.zeros((len(names), *size, 3), np.uint8)
    for i, name in enumerate(tqdm(names, desc="loading whale photos", disable=not progress, mininterval=5)):
        with Image.open(Path(folder) / name) as im:
            out[i] = prepare_image(ImageOps.mirror(im) if mirrored and mirrored[i] else im, *size)
    return out
