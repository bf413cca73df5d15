"""JSON API v1 (see DESIGN.md): health, readiness, models and one endpoint per task."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..errors import ApiError
from ..extensions import engine
from ..gallery import store
from ..rocks import service as rocks_service
from ..salt import segy
from ..salt import service as salt_service
from ..uploads import answer_each, read_uploads
from ..whales import service as whales_service

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.get("/health")
def health():
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    state = engine.state
    body = {"status": state.status, "models": sorted(state.checkpoints), "errors": state.errors}
    if state.status == "ready" and not state.checkpoints:
        body["status"] = "failed"
        body["errors"] = {"*": "no model is installed (MODEL_DIR holds no <task>/model.pt)"}
    return jsonify(body), 200 if body["status"] == "ready" else 503


@bp.get("/models")
def models():
    return jsonify(models=engine.describe())


def _uploads_or_400():
    if "image" not in request.files:
        raise ApiError("missing_file", "send one or more files in the multipart field 'image'")
    uploads = read_uploads(request.files.getlist("image"))
    if not uploads:
        raise ApiError("missing_file", "the field 'image' holds no file")
    return uploads


def _respond(results: list[dict], answered: int):
    """200 with every result when a file was answered; else the first error (413 if all too large)."""
    public = [{k: v for k, v in r.items() if k != "status"} for r in results]
    if answered:
        return jsonify(results=public)
    status = 413 if all(r.get("status") == 413 for r in results) else 400
    first = public[0]["error"]
    raise ApiError(first["code"], first["message"], status, extra={"results": public})


@bp.post("/salt/segment")
def salt_segment():
    """Images, or SEG-Y volumes with the form field ``slice`` (``inline:N``, ``crossline:N``,
    ``time:MS``, ``section``; default: the middle inline)."""
    try:
        threshold = salt_service.parse_threshold(request.form.get("threshold"))
    except ValueError:
        raise ApiError("invalid_threshold", "threshold must be a number between 0 and 1") from None
    try:
        spec = segy.parse_slice(request.form.get("slice"))
    except segy.SegyError as exc:
        raise ApiError("invalid_slice", str(exc)) from None
    if "image" not in request.files:
        raise ApiError("missing_file", "send one or more files in the multipart field 'image'")
    items = salt_service.read_salt_files(request.files.getlist("image"))
    if not items:
        raise ApiError("missing_file", "the field 'image' holds no file")
    engine.checkpoint(salt_service.TASK)  # 503 before decoding when the model is not ready
    return _respond(*answer_each(items, lambda item: salt_service.answer(item, threshold, spec)))



@bp.post("/rocks/classify")
def rocks_classify():
    uploads = _uploads_or_400()
    engine.checkpoint(rocks_service.ROCKS)
    return _respond(*answer_each(uploads, rocks_service.classify))


@bp.post("/similarity/search")
def similarity_search():
    try:
        k = rocks_service.parse_k(request.form.get("k"))
    except ValueError:
        raise ApiError("invalid_k", "k must be an integer between 1 and 100") from None
    try:
        method = rocks_service.parse_method(request.form.get("method"))
    except ValueError as exc:
        raise ApiError("invalid_method", str(exc)) from None
    uploads = _uploads_or_400()
    engine.checkpoint(rocks_service.SIMILARITY)
    store().get(rocks_service.SIMILARITY)  # 409 before decoding when there is no gallery
    return _respond(*answer_each(uploads, lambda u: rocks_service.search(u, k, method)))


@bp.post("/whales/identify")
def whales_identify():
    uploads = _uploads_or_400()
    engine.checkpoint(whales_service.TASK)
    store().get(whales_service.TASK)  # 409 before decoding when there is no gallery
    return _respond(*answer_each(uploads, whales_service.identify))
