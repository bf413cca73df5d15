"""Prometheus metrics (prometheus_client): HTTP traffic, batching, inference, model state.

One serving process per GPU (gunicorn ``workers = 1``) keeps the default in-process
registry exact; with several workers use prometheus_client's multiprocess mode.
"""
from __future__ import annotations

import hmac
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from .accounts import is_admin
from .errors import ApiError, ErrorCode

bp = Blueprint("metrics", __name__)

HTTP_REQUESTS = Counter("geovision_http_requests_total", "HTTP requests answered",
                        ["endpoint", "method", "status"])
HTTP_LATENCY = Histogram("geovision_http_request_duration_seconds", "HTTP request latency",
                         ["endpoint", "method"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
BATCH_SIZE = Histogram("geovision_batch_size", "Rows per forward pass", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
QUEUE_WAIT = Histogram("geovision_queue_wait_seconds", "Time a request waited for its batch", ["model"],
                       buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
INFERENCE = Histogram("geovision_inference_seconds", "Forward pass time per batch", ["model"],
                      buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
QUEUE_DEPTH = Gauge("geovision_queue_depth", "Requests waiting in a model's queue", ["model"])
MODEL_LOADED = Gauge("geovision_model_loaded", "1 when the model is loaded and warm", ["model"])
GPU_MEMORY = Gauge("geovision_gpu_memory_allocated_bytes", "CUDA memory allocated by PyTorch", ["device"])


def observe_batch(model: str, rows: int, queue_waits: list[float], seconds: float) -> None:
    """Record one forward pass (called by the batcher's worker thread)."""
    BATCH_SIZE.labels(model).observe(rows)
    INFERENCE.labels(model).observe(seconds)
    for wait in queue_waits:
        QUEUE_WAIT.labels(model).observe(wait)


@bp.get("/metrics")
def metrics():
    """Prometheus exposition. With ``METRICS_TOKEN``: that bearer token or an admin; without one:
    open when ``AUTH_REQUIRED`` is off, admins only when it is on (401 otherwise)."""
    token = current_app.config.get("METRICS_TOKEN")
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    allowed = is_admin() or (hmac.compare_digest(given.encode(), token.encode()) if token
                             else not current_app.config.get("AUTH_REQUIRED"))
    if not allowed:
        raise ApiError(ErrorCode.UNAUTHORIZED, "the metrics need Authorization: Bearer METRICS_TOKEN (or an admin)", 401,
                       headers={"WWW-Authenticate": "Bearer"})
    state = current_app.extensions["engine"]
    for task, batcher in state.batchers.items():
        QUEUE_DEPTH.labels(task).set(batcher.queue_depth)
    for task in set(state.batchers) | set(state.errors):
        MODEL_LOADED.labels(task).set(1 if task in state.checkpoints else 0)
    if state.device.type == "cuda":
        import torch

        GPU_MEMORY.labels(str(state.device)).set(torch.cuda.memory_allocated(state.device))
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


def _start_timer() -> None:
    g.request_started = time.perf_counter()


def _record(response):
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    if request.endpoint == "api.task_api" and response.status_code != 404:
        # one label per task route (/api/v1/salt/segment), not per arbitrary path
        endpoint = "/api/v1/{task}/{action}".format(**request.view_args)
    if endpoint != "/metrics":
        HTTP_REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        if "request_started" in g:
            HTTP_LATENCY.labels(endpoint, request.method).observe(time.perf_counter() - g.request_started)
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(_start_timer)
    app.after_request(_record)
