"""JSON API v1 (the contract: docs/API.md, /api/v1/openapi.json): health, readiness, models and one route per registered task."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from geovision.imaging import ImageError

from . import jobs
from .accounts import can_see
from .errors import ApiError, ErrorCode
from .extensions import db, engine
from .records import Job
from .serve import Queued, Result, answered_any, bodies, serve
from .storage import shared
from .tasks.registry import registered

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
    dead = state.dead_batchers()
    if dead and body["status"] == "ready":
        body["status"] = "degraded"
        body["errors"] = {**body["errors"], **{t: "the worker thread stopped; restarting it" for t in dead}}
    files = shared()
    if files.remote:
        problem = files.problem()
        body["storage"] = {"url": files.url, "reachable": problem is None}
        if problem and body["status"] == "ready":
            body["status"], body["errors"] = "degraded", {**body["errors"], "storage": problem}
    return jsonify(body), 200 if body["status"] == "ready" else 503


@bp.get("/models")
def models():
    return jsonify(models=engine.describe())


@bp.post("/<task>/<action>")
def task_api(task: str, action: str):
    """``POST /api/v1/<task>/<action>``: the files of field ``image``, answered in order by
    the task's handler (``/salt/segment``, ``/rocks/classify``, ``/similarity/search``,
    ``/whales/identify``); the handler's ``parse_options`` reads the other form fields."""
    handler = registered().get(task)
    if handler is None or action not in (handler.api.action, *handler.api.aliases):
        raise ApiError(ErrorCode.NOT_FOUND, f"no API route /api/v1/{task}/{action}", 404)
    options = handler.parse_options(request.form)
    items = handler.read_inputs(request.files.getlist("image"), request.form)
    if not items and "image" not in request.files:
        raise ApiError(ErrorCode.MISSING_FILE, "send one or more files in the multipart field 'image'")
    if not items:
        raise ApiError(ErrorCode.MISSING_FILE, "the field 'image' holds no file")
    handler.check_ready()   # 503 / 409 before decoding
    results = serve(handler, items, options)
    if len(results) == 1 and isinstance(results[0], Queued):
        return jsonify(results[0].body), 202       # one large input: the job, as /jobs answers it
    return _respond(results)


def _job_handler(task: str):
    handler = registered().get(task)
    if handler is None or not handler.supports_jobs:
        raise ApiError(ErrorCode.NOT_FOUND, f"no background jobs for task {task!r}", 404)
    return handler


@bp.post("/<task>/jobs")
def job_create(task: str):
    """One file (field ``image``) and the task's options: ``202`` with the new job."""
    handler = _job_handler(task)
    options = handler.parse_options(request.form)
    items = handler.read_inputs(request.files.getlist("image"), request.form)
    if len(items) != 1:
        raise ApiError(ErrorCode.MISSING_FILE if not items else "one_file", "a job takes exactly one file in the field 'image'")
    handler.check_ready()
    try:
        item = items[0]
        if getattr(item, "error", None) is not None:
            raise item.error
        job = jobs.create(handler, item, options, handler.job_units(item, **options))
    except ImageError as exc:
        raise ApiError(exc.code, str(exc), exc.status) from None
    return jsonify(jobs.describe(job)), 202


def _job(task: str, job_id: str) -> Job:
    _job_handler(task)
    jobs.runner()
    job = db.session.scalar(db.select(Job).where(Job.public_id == job_id, Job.task == task))
    if job is None or not can_see(job.owner_id):   # another user's job is not found
        raise ApiError(ErrorCode.NOT_FOUND, f"no job {job_id}", 404)
    return job


@bp.get("/<task>/jobs/<job_id>")
def job_status(task: str, job_id: str):
    return jsonify(jobs.describe(_job(task, job_id)))


@bp.delete("/<task>/jobs/<job_id>")
def job_cancel(task: str, job_id: str):
    return jsonify(jobs.describe(jobs.cancel(_job(task, job_id))))


def _respond(results: list[Result]):
    """200 with every result when a file was answered or queued; else the first refusal's error,
    with the status the refusals share (413 if every file was too large), 400 when they differ."""
    if answered_any(results):
        return jsonify(results=bodies(results))
    statuses = {r.status for r in results}
    status = statuses.pop() if len(statuses) == 1 else 400
    first = results[0]
    raise ApiError(first.code, first.message, status, extra={"results": bodies(results)})
