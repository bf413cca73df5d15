"""Admin API: model reload and gallery changes, behind ``Authorization: Bearer $ADMIN_TOKEN``.

Every endpoint answers 404 when ``ADMIN_TOKEN`` is not set (admin actions are off) and
401 without the right token (compared in constant time).
"""
from __future__ import annotations

import hmac
import os
from pathlib import Path

import numpy as np
import torch
from flask import Blueprint, current_app, jsonify, request
from PIL import Image

from .errors import ApiError
from .extensions import engine
from .gallery import append_to_gallery, store
from .imaging import decode_image
from .rocks.processing import normalise, rgb_thumbnail
from .uploads import Upload, answer_each, read_uploads

bp = Blueprint("admin", __name__, url_prefix="/api/v1/admin")


@bp.before_request
def require_token():
    token = current_app.config.get("ADMIN_TOKEN")
    if not token:
        raise ApiError("not_found", "admin actions are disabled (no ADMIN_TOKEN configured)", 404)
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError("unauthorized", "a valid admin token is required", 401)


def _decoded_uploads() -> tuple[list[dict], list[tuple[Upload, Image.Image]]]:
    """The files of field ``image``, decoded: (public per-file results, [(upload, image)] of the
    usable ones). Raises ApiError 400 without a file or without a usable image."""
    uploads = read_uploads(request.files.getlist("image"))
    if not uploads:
        raise ApiError("missing_file", "send one or more files in the multipart field 'image'")
    decoded: list[tuple[Upload, Image.Image]] = []

    def decode(upload: Upload) -> dict:
        decoded.append((upload, decode_image(upload.data, current_app.config["MAX_IMAGE_PIXELS"])))
        return {"filename": upload.filename}

    results, answered = answer_each(uploads, decode)
    if not answered:
        raise ApiError("invalid_image", "no usable image", 400, extra={"results": results})
    return [{k: v for k, v in r.items() if k != "status"} for r in results], decoded


@bp.post("/reload")
def reload_models():
    state = engine.reload(current_app._get_current_object())
    return jsonify(status=state.status, models=sorted(state.checkpoints), errors=state.errors)


@bp.post("/gallery/similarity")
def gallery_add():
    """Add the uploaded images (field ``image``) with form field ``label`` to the similarity gallery."""
    label = (request.form.get("label") or "").strip()
    if not label:
        raise ApiError("missing_label", "form field 'label' is required")
    ckpt = engine.checkpoint("similarity")
    size, norm = int(ckpt.meta["input_shape"][-1]), ckpt.meta["normalization"]
    results, decoded = _decoded_uploads()
    thumbs = [rgb_thumbnail(image, size) for _, image in decoded]
    x = torch.from_numpy(np.stack([normalise(t, norm["mean"], norm["std"]) for t in thumbs]))
    embs = engine.predict("similarity", x).float().numpy()
    items = [{"label": label, "path": f"upload:{upload.filename}"} for upload, _ in decoded]
    size = append_to_gallery(store().folder / "similarity", items, embs, np.stack(thumbs))
    return jsonify(gallery_size=size, results=results)


@bp.post("/gallery/whales")
def gallery_whales_add():
    """Enrol the uploaded photos (field ``image``) of individual ``whale_id`` in the whale gallery."""
    from .whales import service as whales_service

    whale_id = (request.form.get("whale_id") or "").strip()
    if not whale_id or whale_id == "new_whale" or len(whale_id) > 64:
        raise ApiError("missing_whale_id", "form field 'whale_id' (the individual, not new_whale) is required")
    engine.checkpoint(whales_service.TASK)
    results, decoded = _decoded_uploads()
    size = whales_service.enrol(whale_id, [(upload.filename, image, upload.data) for upload, image in decoded])
    return jsonify(gallery_size=size, results=results)


@bp.post("/gallery/similarity/rebuild")
def gallery_rebuild():
    """Rebuild the similarity gallery from the server-side folder ``GALLERY_DATA`` (never a client path)."""
    data = os.environ.get("GALLERY_DATA") or current_app.config.get("GALLERY_DATA")
    if not data or not Path(data).is_dir():
        raise ApiError("not_configured", "set GALLERY_DATA to the reference image folder", 409)
    from .similarity.commands import build_gallery

    size = build_gallery("similarity", Path(data), None)
    return jsonify(gallery_size=size)

