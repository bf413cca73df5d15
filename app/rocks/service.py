"""Rock classification and similarity search for one upload, recorded in the database."""
from __future__ import annotations

import time

import numpy as np
import torch
from flask import current_app, url_for

from ..engine import Checkpoint
from ..extensions import engine
from ..gallery import GalleryUnavailable, store
from ..imaging import decode_image
from ..uploads import Upload, record
from .processing import normalise, rgb_thumbnail

ROCKS, SIMILARITY = "rocks", "similarity"
METHODS = ("embedding", "pixels", "kmeans")


def _prepare(upload: Upload, ckpt: Checkpoint) -> tuple[np.ndarray, np.ndarray, tuple[int, int], float]:
    started = time.perf_counter()
    image = decode_image(upload.data, current_app.config["MAX_IMAGE_PIXELS"])
    size = int(ckpt.meta["input_shape"][-1])
    thumb = rgb_thumbnail(image, size)
    norm = ckpt.meta["normalization"]
    return thumb, normalise(thumb, norm["mean"], norm["std"]), image.size, (time.perf_counter() - started) * 1e3


def classify(upload: Upload) -> dict:
    """Rock type of one image: ``{"filename", "label", "probabilities": {label: p}}``.

    Raises ImageError for unusable images and the engine's errors (ModelNotReady, ...).
    """
    started = time.perf_counter()
    ckpt = engine.checkpoint(ROCKS)
    _, x, size, decode_ms = _prepare(upload, ckpt)
    t0 = time.perf_counter()
    probs = engine.predict(ROCKS, torch.from_numpy(x[None]))[0].float().numpy()
    inference_ms = (time.perf_counter() - t0) * 1e3
    labels = ckpt.meta["labels"]
    probabilities = {lab: round(float(p), 6) for lab, p in zip(labels, probs)}
    label = labels[int(probs.argmax())]
    timings = {"decode_ms": decode_ms, "inference_ms": inference_ms, "total_ms": (time.perf_counter() - started) * 1e3}
    row = record(ROCKS, upload, size, ckpt, {"label": label, "probabilities": probabilities}, timings)
    return {"filename": upload.filename, "label": label, "probabilities": probabilities,
            "prediction_id": row.public_id}


def search(upload: Upload, k: int = 10, method: str = "embedding") -> dict:
    """The ``k`` most similar gallery images: ``{"filename", "matches": [{"id", "label", "score", "image_url"}]}``.

    Raises GalleryUnavailable when no gallery is built, ImageError, and the engine's errors.
    """
    started = time.perf_counter()
    ckpt = engine.checkpoint(SIMILARITY)
    gallery = store().get(SIMILARITY)
    thumb, x, size, decode_ms = _prepare(upload, ckpt)
    if thumb.shape != gallery.pixels.shape[1:]:
        raise GalleryUnavailable("the gallery thumbnails do not match the model input; rebuild the gallery")
    t0 = time.perf_counter()
    embedding = engine.predict(SIMILARITY, torch.from_numpy(x[None]))[0].float().numpy() if method == "embedding" else None
    matches = gallery.search(method, k, embedding=embedding, pixels=thumb)
    inference_ms = (time.perf_counter() - t0) * 1e3
    for m in matches:
        m.pop("path", None)
        m["image_url"] = url_for("similarity.gallery_image", item_id=m["id"], _external=True)
    timings = {"decode_ms": decode_ms, "inference_ms": inference_ms, "total_ms": (time.perf_counter() - started) * 1e3}
    summary = {"method": method, "k": k, "gallery": gallery.version,
               "matches": [{"id": m["id"], "label": m["label"], "score": m["score"]} for m in matches]}
    row = record(SIMILARITY, upload, size, ckpt, summary, timings)
    return {"filename": upload.filename, "method": method, "matches": matches, "prediction_id": row.public_id}


def parse_k(value: str | None) -> int:
    """Form value -> k in 1..100 (default 10); raises ValueError otherwise."""
    if value is None or not str(value).strip():
        return 10
    k = int(str(value).strip())
    if not 1 <= k <= 100:
        raise ValueError("k must be between 1 and 100")
    return k


def parse_method(value: str | None) -> str:
    """Form value -> search method (default ``embedding``); raises ValueError otherwise."""
    method = (value or "embedding").strip()
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    return method
