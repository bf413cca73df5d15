"""Salt segmentation service: upload -> tiles -> batched model -> mask, overlay, RLE, record."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import torch
from flask import current_app, url_for
from PIL import Image, ImageOps

from train.rle import rle_encode

from ..extensions import engine
from ..imaging import decode_image, to_gray
from ..uploads import Upload, record, storage_dir
from . import processing as proc

TASK = "salt"
OVERLAP = 26  #: pixels shared by neighbouring tiles of a large section
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def segment(upload: Upload, threshold: float | None = None) -> dict:
    """Segment one uploaded image of any size and record the answer.

    Args:
        upload: the file; threshold: salt probability cut in [0, 1] (default: the
            checkpoint's ``meta.json`` threshold).
    Returns:
        The API result: filename, width, height, coverage (fraction of salt pixels,
        0..1), rle_mask (Kaggle, column-major), mask_url, overlay_url, prediction_id.
    Raises:
        ImageError: the upload is not a usable image.
        ModelNotReady, QueueFullError, TimeoutError: from the engine.
    """
    started = time.perf_counter()
    image = decode_image(upload.data, current_app.config["MAX_IMAGE_PIXELS"])
    gray = to_gray(image)
    decoded = time.perf_counter()

    ckpt = engine.checkpoint(TASK)
    threshold = float(ckpt.meta.get("threshold", 0.5)) if threshold is None else threshold
    inputs, origins, canvas = proc.model_inputs(gray, ckpt.meta, OVERLAP)
    outputs = engine.predict(TASK, torch.from_numpy(inputs)).float().numpy()
    inferred = time.perf_counter()

    mask = proc.mask_from_outputs(outputs, origins, canvas, gray.shape, ckpt.meta, threshold, OVERLAP)
    coverage = float(mask.mean())
    rle_mask = rle_encode(mask)
    public_id = uuid.uuid4().hex
    folder = storage_dir(public_id)
    if upload.data.startswith(PNG_SIGNATURE):   # browsers show PNG as it is: keep the bytes
        (folder / "input.png").write_bytes(upload.data)
    else:
        image.convert("RGB").save(folder / "input.png", compress_level=1)
    proc.mask_image(mask).save(folder / "mask.png", compress_level=1)
    (folder / "rle.txt").write_text(rle_mask + "\n")   # overlay.png is drawn on first view
    finished = time.perf_counter()

    timings = {"decode_ms": (decoded - started) * 1e3, "inference_ms": (inferred - decoded) * 1e3,
               "total_ms": (finished - started) * 1e3}
    summary = {"coverage": coverage, "rle_mask": rle_mask, "threshold": threshold, "tiles": len(origins)}
    height, width = gray.shape
    record(TASK, upload, (width, height), ckpt, summary, timings, public_id)
    return {
        "filename": upload.filename, "width": width, "height": height,
        "coverage": round(coverage, 6), "rle_mask": rle_mask,
        "mask_url": url_for("salt.result_file", public_id=public_id, name="mask.png", _external=True),
        "overlay_url": url_for("salt.result_file", public_id=public_id, name="overlay.png", _external=True),
        "prediction_id": public_id,
    }


def render_overlay(folder: Path) -> Path:
    """Draw ``overlay.png`` from the stored input and mask of one prediction (first view only)."""
    with Image.open(folder / "input.png") as im:
        gray = to_gray(ImageOps.exif_transpose(im))
    with Image.open(folder / "mask.png") as m:
        mask = np.asarray(m) > 0
    tmp = folder / f".overlay-{uuid.uuid4().hex}.png"
    proc.overlay(gray, mask).save(tmp, compress_level=1)
    tmp.replace(folder / "overlay.png")
    return folder / "overlay.png"


def parse_threshold(value: str | None) -> float | None:
    """Form value -> threshold in [0, 1], None when blank; raises ValueError otherwise."""
    if value is None or not str(value).strip():
        return None
    t = float(value)
    if not np.isfinite(t) or not 0.0 <= t <= 1.0:
        raise ValueError("threshold must be a number between 0 and 1")
    return t
