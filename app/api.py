"""JSON API v1 (see DESIGN.md): health, readiness, models and one route per registered task."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from .errors import ApiError
from .extensions import engine
from .tasks.registry import registered
from .uploads import answer_each

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


@bp.post("/<task>/<action>")
def task_api(task: str, action: str):
    """``POST /api/v1/<task>/<api_action>``: the files of field ``image``, answered in order by
    the task's handler (``/salt/segment``, ``/rocks/classify``, ``/similarity/search``,
    ``/whales/identify``); the handler's ``parse_options`` reads the other form fields."""
    handler = registered().get(task)
    if handler is None or action != handler.api_action:
        raise ApiError("not_found", f"no API route /api/v1/{task}/{action}", 404)
    options = handler.parse_options(request.form)
    if "image" not in request.files:
        raise ApiError("missing_file", "send one or more files in the multipart field 'image'")
    items = handler.read_inputs(request.files.getlist("image"))
    if not items:
        raise ApiError("missing_file", "the field 'image' holds no file")
    handler.check_ready()   # 503 / 409 before decoding
    return _respond(*answer_each(items, lambda item: handler.answer(item, **options)))


def _respond(results: list[dict], answered: int):
    """200 with every result when a file was answered; else the first error (413 if all too large)."""
    public = [{k: v for k, v in r.items() if k != "status"} for r in results]
    if answered:
        return jsonify(results=public)
    status = 413 if all(r.get("status") == 413 for r in results) else 400
    first = public[0]["error"]
    raise ApiError(first["code"], first["message"], status, extra={"results": public})
