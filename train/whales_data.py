"""Beluga / humpback photo-ID data: metadata, the validation split and image pre-processing.

The data folder holds ``train.csv`` (``Image,Id``, Kaggle's humpback whale format),
optionally ``metadata.csv`` (adds ``encounter_id``, ``viewpoint``, ``date``) and the images
in ``images/`` (or beside the CSV). Pure functions, no Flask: the app imports
:func:`prepare_image` so that serving sees exactly what training saw.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .metrics import NEW_WHALE

INPUT_HEIGHT, INPUT_WIDTH = 256, 96   #: model input (portrait: the whales' backs are tall crops)
SPLIT_FILE = Path(__file__).parent / "splits" / "whales_val.csv"
ROLES = ("query_known", "query_new")


def image_folder(data: Path) -> Path:
    """``DATA/images`` when it exists, else ``DATA`` (Kaggle puts images in ``train/``)."""
    data = Path(data)
    for name in ("images", "train"):
        if (data / name).is_dir():
            return data / name
    return data


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
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def partition(rows: list[dict], split: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(training/gallery rows, validation queries with ``truth``, held-out individuals' rows).

    Training rows exclude every query image and every image of a ``query_new`` individual.
    A query's ``truth`` is its ``Id`` for ``query_known`` and ``new_whale`` for ``query_new``.
    """
    roles = {r["Image"]: r["role"] for r in split}
    new_ids = {r["Id"] for r in split if r["role"] == "query_new"}
    train = [r for r in rows if r["Image"] not in roles and r["Id"] not in new_ids]
    queries = [{**r, "truth": r["Id"] if roles[r["Image"]] == "query_known" else NEW_WHALE}
               for r in rows if r["Image"] in roles]
    held_out = [r for r in rows if r["Id"] in new_ids]
    return train, queries, held_out


def prepare_image(image: Image.Image, height: int = INPUT_HEIGHT, width: int = INPUT_WIDTH) -> np.ndarray:
    """uint8 (height, width, 3) RGB model input of a whale photo.

    Landscape photos (side views) are turned a quarter so the long axis is vertical, as in
    the top-down crops; the photo is then resized keeping its aspect ratio to fit, and
    centred on a black canvas (letterboxing: no stretching of the markings).
    """
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        image = Image.fromarray(((arr - lo) / (hi - lo or 1) * 255).round().astype(np.uint8), "L")
    image = image.convert("RGB")
    if image.width > image.height:
        image = image.transpose(Image.Transpose.ROTATE_90)
    scale = min(height / image.height, width / image.width)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image, ((width - size[0]) // 2, (height - size[1]) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def load_images(folder: Path, names: list[str], progress: bool = True) -> np.ndarray:
    """uint8 (N, INPUT_HEIGHT, INPUT_WIDTH, 3) inputs of the named image files."""
    from tqdm import tqdm

    out = np.zeros((len(names), INPUT_HEIGHT, INPUT_WIDTH, 3), np.uint8)
    for i, name in enumerate(tqdm(names, desc="loading whale photos", disable=not progress, mininterval=5)):
        with Image.open(Path(folder) / name) as im:
            out[i] = prepare_image(im)
    return out
