"""Errors blueprint: every error answered as JSON for the API and HTML for pages."""
from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Blueprint, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import LimitedStream

from .engine import ModelNotReady, QueueFullError
from .extensions import db
from .gallery import GalleryUnavailable

bp = Blueprint("errors", __name__)
log = logging.getLogger(__name__)

CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
         409: "conflict", 413: "payload_too_large", 500: "internal_error", 503: "unavailable"}


class ApiError(Exception):
    """An error with an API code, an HTTP status and a message for the user."""

    def __init__(self, code: str, message: str, status: int = 400, extra: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.status, self.extra = code, message, status, extra or {}
        self.headers = headers or {}


def wants_json() -> bool:
    """API paths and clients that prefer JSON get JSON errors."""
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def error_response(code: str, message: str, status: int, extra: dict | None = None, headers: dict | None = None):
    if wants_json():
        response = jsonify({"error": {"code": code, "message": message}, **(extra or {})})
    else:
        response = render_template("errors/error.html", code=code, message=message, status=status)
    return response, status, headers or {}


@bp.app_errorhandler(ApiError)
def handle_api_error(exc: ApiError):
    return error_response(exc.code, exc.message, exc.status, exc.extra, exc.headers)


@bp.app_errorhandler(ModelNotReady)
def handle_not_ready(exc: ModelNotReady):
    return error_response("model_not_ready", str(exc), 503, headers={"Retry-After": "5"})


@bp.app_errorhandler(GalleryUnavailable)
def handle_no_gallery(exc: GalleryUnavailable):
    return error_response(exc.code, str(exc), 409)


@bp.app_errorhandler(QueueFullError)
def handle_queue_full(exc: QueueFullError):
    return error_response("overloaded", "the server is busy; retry shortly", 503, headers={"Retry-After": "1"})


@bp.app_errorhandler(FutureTimeout)
def handle_timeout(exc: FutureTimeout):
    return error_response("timeout", "the model did not answer in time; retry shortly", 503,
                          headers={"Retry-After": "2"})


@bp.app_errorhandler(HTTPException)
def handle_http(exc: HTTPException):
    status = exc.code or 500
    message = exc.description or exc.name
    headers = {}
    if status == 413:
        limit = request.max_content_length or current_app.config.get("MAX_CONTENT_LENGTH") or 0
        message = f"the upload is larger than the limit of {limit / 2**20:.0f} MB"
        if not drain_body(current_app.config.get("MAX_DRAIN_BYTES", 0)):
            headers["Connection"] = "close"
    return error_response(CODES.get(status, exc.name.lower().replace(" ", "_")), message, status, headers=headers)


def drain_body(limit: int) -> bool:
    """Read and drop an unread request body of at most ``limit`` bytes; True when drained.

    A request refused for its size (413) is answered before its body is read; clients that send
    the whole body before reading the answer (Python's requests and urllib) then meet a closed
    connection instead of the answer. Reading the rest first (up to ``limit``, ``MAX_DRAIN_BYTES``)
    lets them read the 413; a larger body is not drained and the connection is closed.
    """
    length = request.content_length
    if length is None or length > limit:
        return False
    stream = LimitedStream(request.environ["wsgi.input"], length)
    while stream.read(1 << 20):
        pass
    return True


@bp.app_errorhandler(Exception)
def handle_unexpected(exc: Exception):
    db.session.rollback()
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response("internal_error", "an unexpected error occurred; it has been logged", 500)
