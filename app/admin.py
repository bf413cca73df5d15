"""Admin API: model reload and gallery changes, for admins only.

Every endpoint needs an admin account's API key (``Authorization: Bearer gv_...``, see
``flask users key``), a signed-in admin, or the bootstrap ``ADMIN_TOKEN`` as the bearer token
(compared in constant time); anything else is answered 401.
"""
from __future__ import annotations

import os
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request
from PIL import Image

from geovision.imaging import ImageError, decode_image
from geovision.metrics import NEW_WHALE

from .accounts import admin_allowed
from .errors import ApiError, ErrorCode
from .extensions import engine
from .serve import Refused
from .tasks.registry import registered
from .uploads import Upload, read_uploads

bp = Blueprint("admin", __name__, url_prefix="/api/v1/admin")


@bp.before_request
def require_admin():
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not admin_allowed(given):
        raise ApiError(ErrorCode.UNAUTHORIZED, "an admin's API key (or ADMIN_TOKEN) is required", 401,
                       headers={"WWW-Authenticate": "Bearer"})


def _decoded_uploads() -> tuple[list[dict], list[tuple[Upload, Image.Image]]]:
    """The files of field ``image``, decoded: (public per-file results, [(upload, image)] of the
    usable ones). Raises ApiError 400 without a file or without a usable image."""
    uploads = read_uploads(request.files.getlist("image"))
    if not uploads:
        raise ApiError(ErrorCode.MISSING_FILE, "send one or more files in the multipart field 'image'")
    decoded: list[tuple[Upload, Image.Image]] = []
    results: list[dict] = []
    for upload in uploads:     # enrolment decodes photos; the gallery hooks embed them
        try:
            decoded.append((upload, decode_image(upload.data, current_app.config["MAX_IMAGE_PIXELS"])))
            results.append({"filename": upload.filename})
        except ImageError as exc:
            results.append(Refused.of(upload, exc).body)
    if not decoded:
        raise ApiError(ErrorCode.INVALID_IMAGE, "no usable image", 400, extra={"results": results})
    return results, decoded


@bp.post("/reload")
def reload_models():
    state = engine.reload(current_app._get_current_object())
    return jsonify(status=state.status, models=sorted(state.checkpoints), errors=state.errors)


@bp.post("/gallery/<task>")
def gallery_add(task: str):
    """Add the uploaded images (field ``image``) to TASK's gallery under the label in the handler's
    ``gallery_label_field`` (``label`` for similarity, ``whale_id`` for whales)."""
    handler = _gallery_handler(task)
    field = handler.gallery_label_field
    label = (request.form.get(field) or "").strip()
    if not label or label == NEW_WHALE or len(label) > 64:
        raise ApiError(f"missing_{field}", f"form field '{field}' is required (at most 64 characters, not new_whale)")
    handler.check_model()
    results, decoded = _decoded_uploads()
    try:
        size = handler.add_to_gallery(label, [(upload.filename, image, upload.data) for upload, image in decoded])
    except ValueError as exc:
        raise ApiError(f"invalid_{field}", str(exc)) from None
    return jsonify(gallery_size=size, results=results)


@bp.post("/gallery/<task>/rebuild")
def gallery_rebuild(task: str):
    """Rebuild TASK's gallery from its server-side folder (config ``gallery_data_key``, e.g.
    ``GALLERY_DATA``; never a client path)."""
    handler = _gallery_handler(task)
    key = handler.gallery_data_key
    if key is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"the {task} gallery has no server-side rebuild", 404)
    data = os.environ.get(key) or current_app.config.get(key)
    if not data or not Path(data).is_dir():
        raise ApiError(ErrorCode.NOT_CONFIGURED, f"set {key} to the reference image folder", 409)
    handler.check_model()
    return jsonify(gallery_size=handler.build_gallery(Path(data), None))


def _gallery_handler(task: str):
    handler = registered().get(task)
    if handler is None or not handler.has_gallery:
        raise ApiError(ErrorCode.NOT_FOUND, f"no gallery for task {task!r}", 404)
    return handler
