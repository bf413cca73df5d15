"""Salt segmentation service: upload -> tiles -> batched model -> mask, overlay, RLE, record."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from flask import current_app, url_for
from PIL import Image, ImageOps
from werkzeug.datastructures import FileStorage

from train.rle import rle_encode

from ..extensions import engine
from ..imaging import ImageError, decode_image, to_gray
from ..uploads import Upload, client_filename, record, storage_dir, upload_root
from . import processing as proc
from . import segy

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

    def save_input(folder: Path) -> None:
        if upload.data.startswith(PNG_SIGNATURE):   # browsers show PNG as it is: keep the bytes
            (folder / "input.png").write_bytes(upload.data)
        else:
            image.convert("RGB").save(folder / "input.png", compress_level=1)

    return _segment_gray(to_gray(image), upload, threshold, save_input, started)


def _segment_gray(gray: np.ndarray, source, threshold: float | None, save_input, started: float,
                  extra: dict | None = None) -> dict:
    """Tiles -> batched model -> blended mask of a grey image (H, W) in [0, 1]; stores the
    input (``save_input(folder)``), mask and RLE, records the answer and returns the API result.
    ``source`` has ``filename`` and ``sha256``; ``extra`` is added to the result and the record."""
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
    save_input(folder)
    proc.mask_image(mask).save(folder / "mask.png", compress_level=1)
    (folder / "rle.txt").write_text(rle_mask + "\n")   # overlay.png is drawn on first view
    finished = time.perf_counter()

    timings = {"decode_ms": (decoded - started) * 1e3, "inference_ms": (inferred - decoded) * 1e3,
               "total_ms": (finished - started) * 1e3}
    summary = {"coverage": coverage, "rle_mask": rle_mask, "threshold": threshold, "tiles": len(origins),
               **(extra or {})}
    height, width = gray.shape
    record(TASK, source, (width, height), ckpt, summary, timings, public_id)
    return {
        "filename": source.filename, **(extra or {}), "width": width, "height": height,
        "coverage": round(coverage, 6), "rle_mask": rle_mask,
        "mask_url": url_for("salt.result_file", public_id=public_id, name="mask.png", _external=True),
        "overlay_url": url_for("salt.result_file", public_id=public_id, name="overlay.png", _external=True),
        "prediction_id": public_id,
    }


# --- SEG-Y -------------------------------------------------------------------------------

_SEGY_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class StoredSegy:
    """A SEG-Y upload kept on disk (``<UPLOAD_FOLDER>/segy/<segy_id>/volume.sgy``)."""

    segy_id: str
    filename: str
    sha256: str
    size_bytes: int

    @property
    def path(self) -> Path:
        return segy_root() / self.segy_id / "volume.sgy"


@dataclass
class Refused:
    """An upload refused before decoding (too large, unreadable SEG-Y): answered with its error."""

    filename: str
    error: ImageError


def segy_root() -> Path:
    return upload_root() / "segy"


def store_segy(file: FileStorage) -> StoredSegy:
    """Stream a SEG-Y upload to disk in 1 MiB chunks (hashing it on the way) and check it opens.

    Raises ImageError: ``segy_too_large`` (413) over ``SEGY_MAX_BYTES``, ``invalid_segy`` when
    segyio cannot read it.
    """
    limit = int(current_app.config["SEGY_MAX_BYTES"])
    stored = StoredSegy(uuid.uuid4().hex, client_filename(file.filename), "", 0)
    stored.path.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with open(stored.path, "wb") as out:
        while chunk := file.stream.read(1 << 20):
            size += len(chunk)
            if size > limit:
                out.close()
                shutil.rmtree(stored.path.parent, ignore_errors=True)
                raise ImageError(f"the SEG-Y file is larger than the limit of {limit / 2**20:.0f} MB",
                                 code="segy_too_large", status=413)
            digest.update(chunk)
            out.write(chunk)
    stored.sha256, stored.size_bytes = digest.hexdigest(), size
    try:
        geometry = segy.geometry(stored.path)
    except segy.SegyError as exc:
        shutil.rmtree(stored.path.parent, ignore_errors=True)
        raise ImageError(str(exc), code="invalid_segy") from None
    (stored.path.parent / "segy.json").write_text(json.dumps(
        {"filename": stored.filename, "sha256": stored.sha256, "size_bytes": size, "geometry": geometry}))
    return stored


def load_segy(segy_id: str) -> tuple[StoredSegy, dict] | None:
    """A stored SEG-Y upload and its geometry, or None for an unknown id."""
    if not _SEGY_ID.match(segy_id or ""):
        return None
    info_path = segy_root() / segy_id / "segy.json"
    if not info_path.is_file():
        return None
    info = json.loads(info_path.read_text())
    return StoredSegy(segy_id, info["filename"], info["sha256"], info["size_bytes"]), info["geometry"]


def segment_segy(stored: StoredSegy, spec: segy.SliceSpec | None, threshold: float | None = None) -> dict:
    """Segment one slice of a stored SEG-Y file (the survey's default slice when ``spec`` is None).

    The result is that of :func:`segment` plus ``slice`` (e.g. ``inline:120``) and ``segy_id``.
    Raises ImageError (``invalid_slice``) for a slice the file does not have.
    """
    started = time.perf_counter()
    info = load_segy(stored.segy_id)
    geometry = info[1] if info else segy.geometry(stored.path)
    spec = spec or segy.parse_slice(geometry["default_slice"])
    try:
        amplitudes = segy.read_slice(stored.path, spec)
    except segy.SegyError as exc:
        raise ImageError(str(exc), code="invalid_slice") from None
    height, width = amplitudes.shape
    limit = current_app.config["MAX_IMAGE_PIXELS"]
    if height * width > limit:
        raise ImageError(f"the slice is {width}x{height} samples; the limit is {limit:,} pixels",
                         code="image_too_large", status=413)
    gray = segy.scale_amplitudes(amplitudes)

    def save_input(folder: Path) -> None:
        Image.fromarray((gray * 255).round().astype(np.uint8), "L").save(folder / "input.png", compress_level=1)

    return _segment_gray(gray, stored, threshold, save_input, started,
                         extra={"slice": str(spec), "segy_id": stored.segy_id})


def read_salt_files(files: list[FileStorage]) -> list[Upload | StoredSegy | Refused]:
    """The files of a salt request: images read into memory (each at most ``MAX_CONTENT_LENGTH``
    bytes), SEG-Y files (``.sgy``/``.segy``) streamed to disk (at most ``SEGY_MAX_BYTES``)."""
    image_limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
    out: list[Upload | StoredSegy | Refused] = []
    for f in files:
        if f is None or not (f.filename or f.content_length):
            continue
        name = client_filename(f.filename)
        if segy.is_segy_name(name):
            try:
                out.append(store_segy(f))
            except ImageError as exc:
                out.append(Refused(name, exc))
            continue
        data = f.read(image_limit + 1) if image_limit else f.read()
        if image_limit and len(data) > image_limit:
            out.append(Refused(name, ImageError(f"the upload is larger than the limit of {image_limit / 2**20:.0f} MB",
                                                code="payload_too_large", status=413)))
        else:
            out.append(Upload(name, data))
    return out


def answer(item: Upload | StoredSegy | Refused, threshold: float | None, spec: segy.SliceSpec | None) -> dict:
    """Segment one item of :func:`read_salt_files`; raises ImageError for refused ones."""
    if isinstance(item, Refused):
        raise item.error
    if isinstance(item, StoredSegy):
        return segment_segy(item, spec, threshold)
    return segment(item, threshold)


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
