"""OpenAPI 3 document of the v1 API, generated from the registered task handlers (apispec).

Each handler describes its route: ``api_fields`` (form fields), ``result_schema`` (one result)
and ``api_errors``; this module adds the shared parts (the ``image`` files, per-file errors, the
error body, health, readiness, models, the admin API). apispec writes the document without
changing how the views are written (flask-smorest or spectree would need their own schema
classes and decorators on every view); ``openapi-spec-validator`` checks it in the tests.
Served at ``/api/v1/openapi.json``; ``/api/docs`` shows it with Swagger UI (local assets).
"""
from __future__ import annotations

from pathlib import Path

from apispec import APISpec
from flask import Blueprint, Response, abort, current_app, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from .errors import error_codes
from .tasks.registry import registered

bp = Blueprint("openapi", __name__)
COMMON_ERRORS = ("missing_file", "empty_file", "invalid_image", "unsupported_format", "image_too_large",
                 "payload_too_large", "model_not_ready", "overloaded", "timeout", "not_found")
#: The docs page runs Swagger UI's own script and inline styles: a CSP for this page only.
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _error(description: str, codes: tuple[str, ...] = ()) -> dict:
    text = description + (f" Codes: {', '.join(codes)}." if codes else "")
    return {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _task_path(handler, action: str) -> dict:
    fields = {"image": {"type": "array", "items": {"type": "string", "format": "binary"},
                        "description": "one or more files (answered in order)"}, **handler.api.fields}
    result = {"type": "object", "required": ["filename", "prediction_id"], "properties": {
        "filename": {"type": "string"}, "prediction_id": {"type": "string", "description": "the database record"},
        **handler.api.result_schema}}
    item = {"oneOf": [result, {"$ref": "#/components/schemas/FileError"}]}
    return {"post": {
        "tags": [handler.name], "summary": handler.page.title, "description": (handler.__doc__ or "").strip(),
        "operationId": f"{handler.name}_{action}",
        "requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "properties": fields,
                       **({} if "segy_id" in handler.api.fields else {"required": ["image"]})}}}},
        "responses": {
            "202": {"description": "a single input above SYNC_MAX_TILES became a background job",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
            "200": {"description": "one result per file, in order; a bad file gets its own error entry",
                    "content": {"application/json": {"schema": {"type": "object", "properties": {
                        "results": {"type": "array", "items": item}}}}}},
            "400": _error("no usable file, or a bad form field.", COMMON_ERRORS[:4] + handler.api.errors),
            "404": _error("no such task or route."),
            "409": _error("the task's gallery is empty, or was embedded by another model than the served one "
                          "(rebuild it).", ("gallery_empty", "gallery_stale")),
            "413": _error("the upload (or every file) is too large.", ("payload_too_large", "image_too_large")),
            "503": _error("model not loaded, queue full or timed out; retry after Retry-After seconds.",
                          ("model_not_ready", "overloaded", "timeout")),
        }}}


JOB_SCHEMA = {"type": "object", "required": ["job_id", "status", "progress", "status_url"], "properties": {
    "job_id": {"type": "string"}, "task": {"type": "string"}, "filename": {"type": "string"},
    "status": {"type": "string", "enum": ["queued", "running", "done", "failed", "cancelled"]},
    "progress": {"type": "number", "minimum": 0, "maximum": 1}, "tiles_done": {"type": "integer"},
    "tiles_total": {"type": "integer"},
    "unit": {"type": "string", "enum": ["tiles", "lines"], "description": "what tiles_done counts (lines: a salt volume)"},
    "eta_s": {"type": "number", "nullable": True},
    "error": {"type": "string", "nullable": True}, "status_url": {"type": "string", "format": "uri"}},
    "additionalProperties": True, "description": "when done, also the result fields of the task's route"}


def _job_paths(spec: APISpec, handler) -> None:
    job = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}
    form = _task_path(handler, handler.api.action)["post"]["requestBody"]
    spec.path(f"/api/v1/{handler.name}/jobs", operations={"post": {
        "tags": [handler.name], "summary": f"{handler.page.title} of one large input as a background job",
        "requestBody": form, "responses": {
            "202": {"description": "the job, queued", **job}, "400": _error("no file, more than one, or a bad field."),
            "429": _error("this client has the most active jobs allowed; Retry-After.", ("too_many_jobs",)),
            "503": _error("the server runs as many jobs as it can; Retry-After.", ("jobs_busy", "model_not_ready"))}}})
    param = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    spec.path(f"/api/v1/{handler.name}/jobs/{{job_id}}", operations={
        "get": {"tags": [handler.name], "summary": "State, progress and, when done, the result", "parameters": param,
                "responses": {"200": {"description": "the job", **job}, "404": _error("no such job.")}},
        "delete": {"tags": [handler.name], "summary": "Cancel the job", "parameters": param,
                   "responses": {"200": {"description": "the job, cancelled", **job}, "404": _error("no such job.")}}})


def build_spec() -> dict:
    """The OpenAPI 3.0 document of the current app's v1 API, as a dict."""
    spec = APISpec(title="GeoVision API", version="1", openapi_version="3.0.3", info={
        "description": "Salt segmentation, rock classification, image similarity and whale identification. "
                       "The Open Inference Protocol (KServe v2) is served beside it under /v2."})
    codes = error_codes()
    spec.components.schema("ErrorCode", {"type": "string", "enum": list(codes), "description": "; ".join(
        f"`{code}` ({status}): {meaning}" for code, (status, meaning) in codes.items())})
    spec.components.schema("Error", {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"$ref": "#/components/schemas/ErrorCode"}, "message": {"type": "string"}}}}})
    spec.components.schema("FileError", {"type": "object", "required": ["filename", "error"], "properties": {
        "filename": {"type": "string"}, "error": {"type": "object", "properties": {
            "code": {"type": "string", "enum": list(COMMON_ERRORS)}, "message": {"type": "string"}}}}})
    spec.components.schema("Job", JOB_SCHEMA)
    spec.components.security_scheme("apiKey", {"type": "http", "scheme": "bearer", "description":
                                               "an account's API key (gv_...; `flask users key NAME` or the account "
                                               "page); needed when AUTH_REQUIRED is on (production)"})
    spec.components.security_scheme("admin", {"type": "http", "scheme": "bearer",
                                              "description": "an admin account's API key, or the bootstrap ADMIN_TOKEN"})
    ok = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    spec.path("/api/v1/health", operations={"get": {"tags": ["server"], "summary": "Liveness", "responses": {"200": ok}}})
    spec.path("/api/v1/ready", operations={"get": {
        "tags": ["server"], "summary": "Every model loaded and warm (and the shared store reachable, when one is set)",
        "description": "`status`: ready, loading, failed, or degraded (models ready, `STORAGE_URL` unreachable); "
                       "`storage` {url, reachable} only with a shared store.",
        "responses": {"200": ok, "503": ok}}})
    spec.path("/api/v1/models", operations={"get": {"tags": ["server"], "summary": "Loaded models and their metrics",
                                                    "responses": {"200": ok}}})
    spec.path("/api/v1/openapi.json", operations={"get": {"tags": ["server"], "summary": "This document",
                                                          "responses": {"200": ok}}})
    admin = {"tags": ["admin"], "security": [{"admin": []}]}
    denied = {"401": _error("not an admin's key (nor ADMIN_TOKEN).")}
    spec.path("/api/v1/admin/reload", operations={"post": {**admin, "summary": "Reload every checkpoint",
                                                           "responses": {"200": ok, **denied}}})
    for handler in registered().values():
        for action in (handler.api.action, *handler.api.aliases):
            spec.path(f"/api/v1/{handler.name}/{action}", operations=_task_path(handler, action))
        if handler.supports_jobs:
            _job_paths(spec, handler)
        if handler.has_gallery:
            field = handler.gallery_label_field
            body = {"multipart/form-data": {"schema": {"type": "object", "required": ["image", field], "properties": {
                "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
                field: {"type": "string", "maxLength": 64}}}}}
            spec.path(f"/api/v1/admin/gallery/{handler.name}", operations={"post": {
                **admin, "summary": f"Add photos to the {handler.name} gallery", "requestBody": {"content": body},
                "responses": {"200": ok, "400": _error("bad label or no usable image."), **denied}}})
        if handler.has_gallery and handler.gallery_data_key:
            spec.path(f"/api/v1/admin/gallery/{handler.name}/rebuild", operations={"post": {
                **admin, "summary": f"Rebuild the {handler.name} gallery from {handler.gallery_data_key}",
                "responses": {"200": ok, "409": _error("the folder is unset or holds no image.",
                                                       ("not_configured", "gallery_empty")), **denied}}})
    document = spec.to_dict()
    document["security"] = [{"apiKey": []}]   # every route but health, readiness and this document
    for path in ("/api/v1/health", "/api/v1/ready", "/api/v1/openapi.json"):
        document["paths"][path]["get"]["security"] = []
    return document


@bp.get("/api/v1/openapi.json")
def openapi_json():
    return build_spec()


@bp.get("/api/docs")
def docs():
    response = Response(render_template("api_docs.html"))
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


@bp.get("/api/docs/assets/<name>")
def docs_asset(name: str):
    """Swagger UI's files from the ``swagger-ui-bundle`` package (no CDN)."""
    if name not in {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png"}:
        abort(404)
    return send_from_directory(Path(swagger_ui_path), name, max_age=current_app.get_send_file_max_age(name))
