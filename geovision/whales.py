"""Whale photo-ID pieces shared by serving and training (pure: PIL, NumPy, no Flask).

Photos are letterboxed to the model's portrait input (:func:`prepare_image`), so that serving
sees exactly what training saw; individuals are ranked by their best gallery photo
(:func:`rank_individuals`); the validation split file (``Image,Id,role``) is read and applied
to a photo list by :func:`read_split` and :func:`partition`.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .metrics import NEW_WHALE

#: default model input (portrait: the whales' backs are tall crops, about 460x150 px); a checkpoint's
#: ``meta.json`` ``input_shape`` [3, H, W] says which size it was trained on
INPUT_HEIGHT, INPUT_WIDTH = 320, 112
ROLES = ("query_known", "query_new")


def image_folder(data: Path) -> Path:
    """``DATA/images`` when it exists, else ``DATA`` (Kaggle puts images in ``train/``)."""
    data = Path(data)
    for name in ("images", "train"):
        if (data / name).is_dir():
            return data / name
    return data


def read_split(path: Path) -> list[dict]:
    """Rows ``{"Image", "Id", "role"}`` of a split CSV (``role`` is one of :data:`ROLES`)."""
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


def rank_individuals(scores: np.ndarray, whale_ids: np.ndarray, limit: int | None = None) -> list[tuple[str, float]]:
    """Individuals ranked by their best photo's similarity to one query.

    Args:
        scores: float (G,) cosine similarity of the query to each gallery photo.
        whale_ids: (G,) individual of each gallery photo.
        limit: keep the best ``limit`` individuals (all when None).
    Returns:
        ``[(whale_id, score)]``, best first; an individual scores its best photo (max
        aggregation, as in the humpback solutions that compared a query with every photo).
    """
    order = np.argsort(-scores, kind="stable")
    seen: dict[str, float] = {}
    for i in order:
        whale = str(whale_ids[i])
        if whale not in seen:
            seen[whale] = float(scores[i])
            if limit is not None and len(seen) >= limit:
                break
    return list(seen.items())


def fuse_rankings(votes: list[tuple[str, float]], cosines: list[tuple[str, float]], weight: float,
                  depth: int = 200) -> list[tuple[str, float]]:
    """Score fusion of the local-feature ranking with the embedding's.

    Each candidate (the first ``depth`` of either list) scores ``votes / best votes + weight x
    max(0, cosine)``: the LNBNN votes (:mod:`geovision.photoid`) rescaled so the best is 1, plus the
    best-photo cosine similarity of the embedding (:func:`rank_individuals`); an individual absent
    from one list gets 0 from it. Score fusion after Fox & Shaw's CombSUM (TREC-2, 1994).

    Args:
        votes: [(whale_id, votes)] best first (votes >= 0).
        cosines: [(whale_id, cosine)] best first.
        weight: the embedding's weight (0: the votes' order).
    Returns [(whale_id, fused score)] best first (ties by id).
    """
    top = votes[0][1] if votes and votes[0][1] > 0 else 1.0
    by_votes, by_cos = dict(votes[:depth]), dict(cosines[:depth])
    fused = {w: by_votes.get(w, 0.0) / top + weight * max(0.0, by_cos.get(w, 0.0)) for w in {*by_votes, *by_cos}}
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
