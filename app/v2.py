"""Open Inference Protocol (KServe v2, the protocol of Triton and KServe) beside the v1 API.

    GET  /v2                          server metadata
    GET  /v2/health/live | ready      200 when live / when every model is loaded
    GET  /v2/models/{task}            model metadata: inputs and outputs (name, datatype, shape)
    GET  /v2/models/{task}/ready      200 when the task can answer, else 400
    POST /v2/models/{task}/infer      input ``image``: BYTES [N], one encoded image per element

Requests and responses follow the v2 REST specification with Triton's binary tensor extension
(``Inference-Header-Content-Length``: a JSON header, then the tensors' raw bytes; a BYTES
element is its little-endian uint32 length and its bytes), which ``tritonclient.http`` uses by
default. Without the extension, BYTES elements are base64 strings in the JSON ``data``. The
request's ``parameters`` carry the task's options (salt ``threshold``; similarity ``k``,
``method``). Each element is answered by the task's handler, through the same batcher and
database records as v1 (:func:`app.serve.serve`: the elements' rows go to the batcher in one
call; recorded once every element is answered and its tensors built); the handler turns the
answers into named output tensors.
Source: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ and
https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md
"""
from __future__ import annotations

import base64
import json
import struct

import numpy as np
from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.datastructures import MultiDict

from .engine import ModelNotReady
from .errors import ApiError
from .extensions import engine
from .gallery import GalleryUnavailable
from .serve import Refused, keep, serve
from .tasks.registry import registered
from .uploads import Upload
from .v2_schema import InferRequest

bp = Blueprint("v2", __name__, url_prefix="/v2")
HEADER_LENGTH = "Inference-Header-Content-Length"


def V2Error(message: str, status: int = 400, code: str = "invalid_request") -> ApiError:
    """An :class:`app.errors.ApiError` of this protocol (answered with the v2 error body
    ``{"error": message, "code": code}`` by :func:`app.errors.error_response`, as every error on ``/v2``)."""
    return ApiError(code, message, status)


@bp.get("")
def server_metadata():
    return jsonify(name="geovision", version="1", extensions=["binary_tensor_data"])


@bp.get("/health/live")
def live():
    return jsonify(live=True)


@bp.get("/health/ready")
def ready():
    state = engine.state
    ok = state.status == "ready" and bool(state.checkpoints)
    return jsonify(ready=ok), 200 if ok else 400


def _handler(task: str, version: str | None = None):
    """The handler of model ``task``; with a ``version`` (the path's), the loaded checkpoint must
    be that version (Open Inference Protocol: a model version that is not served is an error)."""
    handler = registered().get(task)
    if handler is None:
        raise V2Error(f"unknown model {task!r}; models: {', '.join(registered())}", 404, "unknown_model")
    ckpt = engine.state.checkpoints.get(handler.model_task)
    if version is not None and ckpt is not None and version != ckpt.version:
        raise V2Error(f"model {task!r} has no version {version!r}; served: {ckpt.version}", 404, "unknown_version")
    return handler


@bp.get("/models/<task>")
@bp.get("/models/<task>/versions/<version>")
def model_metadata(task: str, version: str | None = None):
    handler = _handler(task, version)
    ckpt = engine.state.checkpoints.get(handler.model_task)
    return jsonify(name=task, versions=[ckpt.version] if ckpt else [], platform="pytorch_torchscript",
                   inputs=[{"name": "image", "datatype": "BYTES", "shape": [-1]}],
                   outputs=[{"name": n, "datatype": d, "shape": s} for n, d, s in handler.api.v2_output_specs])


@bp.get("/models/<task>/ready")
@bp.get("/models/<task>/versions/<version>/ready")
def model_ready(task: str, version: str | None = None):
    handler = _handler(task, version)
    try:
        handler.check_ready()
    except (ModelNotReady, GalleryUnavailable) as exc:
        return jsonify(name=task, ready=False, error=str(exc)), 400
    return jsonify(name=task, ready=True)


@bp.post("/models/<task>/infer")
@bp.post("/models/<task>/versions/<version>/infer")
def infer(task: str, version: str | None = None):
    handler = _handler(task, version)
    header, images = _read_request()
    try:
        options = handler.parse_options(MultiDict({k: str(v) for k, v in (header.parameters or {}).items()}))
    except ApiError as exc:
        raise V2Error(f"{exc.code}: {exc.message}", exc.status, exc.code) from None
    handler.check_ready()       # ModelNotReady (503), GalleryUnavailable (409): app.errors answers them
    # one trip to the batcher for every element; a tensor request succeeds or fails whole: nothing is kept before the end
    results = serve(handler, [Upload(f"image[{i}]", data) for i, data in enumerate(images)], options,
                    queue=False, record=False)
    for refused in (r for r in results if isinstance(r, Refused)):
        raise V2Error(f"{refused.filename}: {refused.code}: {refused.message}", refused.status, refused.code)
    try:
        outputs = handler.api.v2_outputs([r.outcome.result for r in results], **options)
    except ValueError as exc:
        raise V2Error(str(exc)) from None
    keep(handler, results)
    ckpt = engine.checkpoint(handler.model_task)
    return _response(header, task, ckpt.version, outputs)


def _read_request() -> tuple[InferRequest, list[bytes]]:
    """(the validated JSON header, the encoded images of input ``image``); raises ApiError
    (``invalid_request``, 400) for a malformed request, naming the field."""
    body = request.get_data(cache=False)
    length = request.headers.get(HEADER_LENGTH)
    try:
        split = int(length) if length is not None else len(body)
        if not 0 <= split <= len(body):
            raise ValueError(split)
        header = InferRequest.model_validate_json(body[:split] or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise V2Error(f"malformed request: {where}: {first['msg']}") from None
    except ValueError:
        raise V2Error(f"{HEADER_LENGTH} must be a byte count within the body ({len(body)} bytes)") from None
    binary, offset, images = body[split:], 0, None
    for tensor in header.inputs:
        size = tensor.parameters.binary_data_size if tensor.parameters else None
        raw = binary[offset:offset + size] if size is not None else None
        if raw is not None and len(raw) < size:
            raise V2Error(f"input {tensor.name!r} declares {size} binary bytes; the body holds {len(raw)}")
        offset += size or 0
        if tensor.name != "image":
            continue
        if tensor.datatype != "BYTES":
            raise V2Error("input 'image' must have datatype BYTES (one encoded image per element)")
        images = _bytes_elements(raw) if raw is not None else _base64_elements(tensor.data)
        expected = int(np.prod(tensor.shape or [len(images)]))
        if expected != len(images):
            raise V2Error(f"input 'image' has shape {tensor.shape} but {len(images)} elements")
    if not images:
        raise V2Error("send one or more encoded images in the BYTES input 'image'")
    return header, images


def _bytes_elements(raw: bytes) -> list[bytes]:
    """Triton's serialised BYTES tensor: each element a little-endian uint32 length, then its bytes."""
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise V2Error("truncated BYTES tensor")
        (size,) = struct.unpack_from("<I", raw, pos)
        out.append(raw[pos + 4:pos + 4 + size])
        pos += 4 + size
    return out


def _base64_elements(data) -> list[bytes]:
    if not isinstance(data, list):
        raise V2Error("input 'image' needs 'data' (base64 strings) or binary data")
    try:
        return [base64.b64decode(d, validate=True) for d in np.asarray(data, dtype=object).ravel()]
    except (ValueError, TypeError):
        raise V2Error("input 'image' data must be base64 strings without the binary extension") from None


def _response(header: InferRequest, task: str, version: str, outputs: list[tuple[str, str, np.ndarray]]) -> Response:
    """JSON response, or JSON header + binary tensors for the outputs the client asked in binary."""
    wanted = {o.name: o.model_dump() for o in header.outputs or []}
    binary_default = bool((header.parameters or {}).get("binary_data_output"))
    tensors, blobs = [], []
    for name, datatype, array in outputs:
        if wanted and name not in wanted:
            continue
        spec = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if (wanted.get(name, {}).get("parameters") or {}).get("binary_data", binary_default):
            blob = _serialise(array, datatype)
            spec["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            spec["data"] = [x.decode() if isinstance(x, bytes) else x for x in array.ravel().tolist()]
        tensors.append(spec)
    body = {"model_name": task, "model_version": version, "outputs": tensors}
    if header.id is not None:
        body["id"] = header.id
    text = json.dumps(body).encode()
    if not blobs:
        return Response(text, mimetype="application/json")
    return Response(text + b"".join(blobs), mimetype="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(text))})


def _serialise(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(x)) + x for x in (e if isinstance(e, bytes) else str(e).encode()
                                                                for e in array.ravel()))
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()

