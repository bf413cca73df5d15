"""Errors blueprint: one error model, three renderings.

Every error is a code, an HTTP status and a message (:class:`ApiError`, or the engine's and the
gallery's exceptions, or a werkzeug HTTP error, mapped here): ``/api/v1`` answers
``{"error": {"code", "message"}}``, ``/v2`` the Open Inference Protocol's error body
``{"error": message}`` (with ``code`` beside it) whatever the Accept header says, and pages the
HTML error page (JSON when the client prefers it)."""
from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout
from enum import StrEnum

from flask import Blueprint, current_app, has_app_context, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import LimitedStream

from .engine import ModelNotReady, QueueFullError
from .extensions import db
from .gallery import GalleryUnavailable

bp = Blueprint("errors", __name__)
log = logging.getLogger(__name__)

CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         409: "conflict", 413: "payload_too_large", 429: "too_many_requests", 500: "internal_error",
         503: "unavailable"}


class ErrorCode(StrEnum):
    """Every error code the server answers, with its HTTP status and its meaning. The OpenAPI
    document (``ErrorCode``) is generated from it and docs/API.md's table is checked against it;
    :class:`ApiError` refuses any other code, and a test scans the sources for codes raised
    outside it (tests/test_v2_errors.py)."""

    status: int
    meaning: str

    def __new__(cls, code: str, status: int, meaning: str):
        member = str.__new__(cls, code)
        member._value_, member.status, member.meaning = code, status, meaning
        return member

    BAD_REQUEST = "bad_request", 400, "the request is malformed (a form the server cannot read)"
    MISSING_FILE = "missing_file", 400, "no file in the `image` field"
    ONE_FILE = "one_file", 400, "a job takes exactly one file in the `image` field; several were sent"
    EMPTY_FILE = "empty_file", 400, "a file of 0 bytes"
    INVALID_IMAGE = "invalid_image", 400, "not a readable image (or a damaged one)"
    UNSUPPORTED_FORMAT = "unsupported_format", 400, "an image format other than PNG, JPEG, TIFF, GIF, BMP or WebP"
    INVALID_THRESHOLD = "invalid_threshold", 400, "salt `threshold` outside 0..1"
    INVALID_K = "invalid_k", 400, "similarity `k` outside 1..100, or whale `k` outside 5..50"
    INVALID_METHOD = "invalid_method", 400, "similarity `method` other than embedding, pixels or kmeans"
    INVALID_VIEWPOINT = "invalid_viewpoint", 400, "whale `viewpoint` other than auto, top, left or right"
    INVALID_SLICE = "invalid_slice", 400, "a SEG-Y `slice` the volume cannot give"
    INVALID_SEGY = "invalid_segy", 400, "a SEG-Y file that cannot be read (headers, sample format, geometry)"
    INVALID_DOMAIN = "invalid_domain", 400, "SEG-Y `domain` other than time or depth"
    INVALID_DATA_AREA = "invalid_data_area", 400, "`data_area` other than auto, all or four pixel numbers"
    NOT_AMPLITUDES = "not_amplitudes", 400, "a SEG-Y volume of velocities, not amplitudes"
    INVALID_CLICKS = "invalid_clicks", 400, "salt `clicks` that are not a JSON list of {x, y, salt} inside the image, or too many"
    INVALID_FUSE = "invalid_fuse", 400, "salt volume `fuse` other than inline or inline+crossline"
    MISSING_LABEL = "missing_label", 400, "similarity gallery upload without a `label` (at most 64 characters)"
    MISSING_WHALE_ID = "missing_whale_id", 400, "whale gallery upload without a `whale_id` (at most 64 characters, not new_whale)"
    INVALID_LABEL = "invalid_label", 400, "a similarity gallery `label` the gallery refuses"
    INVALID_WHALE_ID = "invalid_whale_id", 400, "a whale gallery `whale_id` the gallery refuses"
    INVALID_REQUEST = "invalid_request", 400, "a v2 request whose JSON header breaks the protocol (the field is named)"
    UNAUTHORIZED = "unauthorized", 401, "no valid sign-in or API key (Authorization: Bearer), or not an admin where one is needed"
    FORBIDDEN = "forbidden", 403, "a page for admins only"
    NOT_FOUND = "not_found", 404, "no such page, task, result, job or gallery image"
    UNKNOWN_MODEL = "unknown_model", 404, "v2: no such model"
    UNKNOWN_VERSION = "unknown_version", 404, "v2: the model is served at another version (the path's version)"
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "the route does not take this HTTP method"
    CONFLICT = "conflict", 409, "the request conflicts with the server's state"
    GALLERY_EMPTY = "gallery_empty", 409, "the task's gallery holds no image yet"
    GALLERY_STALE = "gallery_stale", 409, "the gallery was embedded by another model than the served one: rebuild it"
    NOT_CONFIGURED = "not_configured", 409, "the admin action needs a setting that is not set"
    PAYLOAD_TOO_LARGE = "payload_too_large", 413, "the request is larger than MAX_CONTENT_LENGTH"
    IMAGE_TOO_LARGE = "image_too_large", 413, "an image or slice over MAX_IMAGE_PIXELS"
    SEGY_TOO_LARGE = "segy_too_large", 413, "a SEG-Y file over SEGY_MAX_BYTES"
    VOLUME_TOO_LARGE = "volume_too_large", 413, "a salt volume job over VOLUME_MAX_SAMPLES samples"
    TOO_MANY_JOBS = "too_many_jobs", 429, "this account (or address) has the most active jobs allowed (Retry-After)"
    TOO_MANY_REQUESTS = "too_many_requests", 429, ("too many requests from this address for a rate limit (sign-in attempts: "
        "LOGIN_RATE_LIMIT); Retry-After says when to try again")
    INTERNAL_ERROR = "internal_error", 500, "a fault of the server; it is logged"
    MODEL_NOT_READY = "model_not_ready", 503, "the model is loading or failed to load (Retry-After)"
    OVERLOADED = "overloaded", 503, "the inference queue is full (Retry-After)"
    TIMEOUT = "timeout", 503, "the model did not answer in time (Retry-After)"
    JOBS_BUSY = "jobs_busy", 503, "the server runs as many jobs as it can (Retry-After)"
    UNAVAILABLE = "unavailable", 503, "the server cannot answer now"


#: code -> (HTTP status, meaning) of the server's own codes (:class:`ErrorCode` in order).
ERROR_CODES = {code.value: (code.status, code.meaning) for code in ErrorCode}


def register_codes(app, codes: dict[str, tuple[int, str]]) -> None:
    """Add the codes a task declares (``TaskApi.error_codes``, its options' ``invalid_<field>``) to
    ``app``'s table: code -> (status, meaning). A code already known keeps its entry; one known with
    another status is a programming error (ValueError)."""
    table = app.extensions.setdefault("error_codes", dict(ERROR_CODES))
    for code, (status, meaning) in codes.items():
        if code in table and table[code][0] != status:
            raise ValueError(f"error code {code!r} is declared with status {status}, known with {table[code][0]}")
        table.setdefault(code, (status, meaning))


def error_codes() -> dict[str, tuple[int, str]]:
    """Every code the current app answers: :class:`ErrorCode` and its tasks' declared codes (the
    OpenAPI ``ErrorCode`` schema and docs/API.md's table list exactly these)."""
    return current_app.extensions.get("error_codes", ERROR_CODES) if has_app_context() else ERROR_CODES


class ApiError(Exception):
    """An error with an API code (an :class:`ErrorCode` member, or a code string the app knows:
    :func:`error_codes`), its HTTP status and a message for the user.

    ``status`` defaults to the code's (a request of several files answers one status for all of
    them); an unknown code is a programming error (ValueError: "not in app.errors.ERROR_CODES"):
    the enum, the tasks' declared codes, the OpenAPI ``ErrorCode`` and docs/API.md then always list
    what the server answers. ``code`` is kept as the plain string the client reads."""

    def __init__(self, code: ErrorCode | str, message: str, status: int | None = None, extra: dict | None = None,
                 headers: dict | None = None):
        table = error_codes()
        if str(code) not in table:
            raise ValueError(f"error code {code!r} is not in app.errors.ERROR_CODES or a task's declared codes")
        super().__init__(message)
        self.code, self.message, self.extra = str(code), message, extra or {}
        self.status = table[str(code)][0] if status is None else status
        self.headers = headers or {}


def wants_json() -> bool:
    """API paths, JSON requests (the pages' scripts) and clients that prefer JSON get JSON errors."""
    if request.path.startswith("/api/") or request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def error_response(code: str, message: str, status: int, extra: dict | None = None, headers: dict | None = None):
    if request.path == "/v2" or request.path.startswith("/v2/"):
        return jsonify({"error": message, "code": code}), status, headers or {}
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
    if status == 429:      # Flask-Limiter (sign-in attempts): its description is the limit, "10 per 1 minute"
        message = f"too many sign-in attempts from this address (at most {message}); try again in a minute"
        headers["Retry-After"] = "60"
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
