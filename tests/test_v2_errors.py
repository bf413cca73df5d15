"""Every /v2 error is the Open Inference Protocol's JSON error body, whatever the Accept header."""
from __future__ import annotations

import base64
import io
from concurrent.futures import TimeoutError as FutureTimeout

import pytest

from app.engine import QueueFullError

from .conftest import make_app, rock_png

IMAGE = base64.b64encode(rock_png("marble")).decode()
GOOD_INPUT = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [IMAGE]}
MALFORMED = {
    "shape not a list": ({"inputs": [{**GOOD_INPUT, "shape": "abc"}]}, "inputs.0.shape"),
    "inputs an object": ({"inputs": GOOD_INPUT}, "inputs"),
    "parameters a list": ({"parameters": [1], "inputs": [GOOD_INPUT]}, "parameters"),
    "binary_data_size not a number": ({"inputs": [{**GOOD_INPUT, "parameters": {"binary_data_size": "x"}}]},
                                      "inputs.0.parameters.binary_data_size"),
    "binary_data_size negative": ({"inputs": [{**GOOD_INPUT, "parameters": {"binary_data_size": -10}}]},
                                  "inputs.0.parameters.binary_data_size"),
    "no inputs": ({}, "inputs"),
    "negative shape": ({"inputs": [{**GOOD_INPUT, "shape": [-1]}]}, "inputs.0.shape.0"),
}


def assert_v2_error(response, status: int, code: str) -> dict:
    assert response.status_code == status and response.mimetype == "application/json", response.data[:200]
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"] and body["code"] == code
    return body


@pytest.mark.parametrize("case", MALFORMED)
@pytest.mark.parametrize("accept", [None, "*/*", "text/html"])
def test_a_malformed_request_is_a_400_naming_the_field(client, case, accept):
    body, field = MALFORMED[case]
    headers = {"Accept": accept} if accept else {}
    response = client.post("/v2/models/rocks/infer", json=body, headers=headers)
    assert field in assert_v2_error(response, 400, "invalid_request")["error"]


def test_a_valid_request_still_answers(client):
    response = client.post("/v2/models/rocks/infer", json={"inputs": [GOOD_INPUT], "id": "r1"})
    assert response.status_code == 200 and response.get_json()["id"] == "r1"


def test_a_header_length_past_the_body_is_refused(client):
    response = client.post("/v2/models/rocks/infer", data=b'{"inputs": []}',
                           headers={"Inference-Header-Content-Length": "999"})
    assert "Inference-Header-Content-Length" in assert_v2_error(response, 400, "invalid_request")["error"]


def test_unknown_models_and_routes_are_v2_errors(client):
    assert_v2_error(client.post("/v2/models/basalt/infer", json={"inputs": [GOOD_INPUT]}), 404, "unknown_model")
    assert_v2_error(client.get("/v2/nowhere", headers={"Accept": "text/html"}), 404, "not_found")


def test_a_version_path_answers_for_the_served_version_only(app, client):
    """/v2/models/<m>/versions/<v>/...: the served version answers; another is an OIP 404, not an
    answer from the model that happens to be loaded."""
    served = app.extensions["engine"].checkpoints["rocks"].version
    ok = client.post(f"/v2/models/rocks/versions/{served}/infer", json={"inputs": [GOOD_INPUT]})
    assert ok.status_code == 200 and ok.get_json()["model_version"] == served
    for method, path in (("post", "infer"), ("get", "ready"), ("get", "")):
        url = f"/v2/models/rocks/versions/not-{served}" + (f"/{path}" if path else "")
        call = getattr(client, method)
        response = call(url, json={"inputs": [GOOD_INPUT]}) if method == "post" else call(url)
        assert served in assert_v2_error(response, 404, "unknown_version")["error"]
    assert client.get(f"/v2/models/rocks/versions/{served}/ready").status_code == 200


@pytest.mark.parametrize("exc, status, code", [(QueueFullError("full"), 503, "overloaded"),
                                               (FutureTimeout(), 503, "timeout"),
                                               (RuntimeError("boom"), 500, "internal_error")])
def test_server_side_failures_are_v2_errors(app, client, monkeypatch, exc, status, code):
    from app.tasks import registry

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(registry.registered(app)["rocks"], "check_ready", fail)
    response = client.post("/v2/models/rocks/infer", json={"inputs": [GOOD_INPUT]}, headers={"Accept": "*/*"})
    assert_v2_error(response, status, code)
    if status == 503:
        assert response.headers["Retry-After"]


def test_a_too_large_body_is_a_v2_413(tiny_model_dir, tmp_path):
    app = make_app(tiny_model_dir, tmp_path, MAX_CONTENT_LENGTH=1000)
    try:
        response = app.test_client().post("/v2/models/rocks/infer", data=io.BytesIO(b"{" + b" " * 5000 + b"}"))
        assert_v2_error(response, 413, "payload_too_large")
    finally:
        app.extensions["engine"].close()


def _raised_codes() -> set[str]:
    """Every error code raised in the sources: ErrorCode members, and the literals of ImageError (the
    core cannot import the server's enum), gallery errors and V2Error."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    patterns = [r'ApiError\(\s*"([a-z_]+)"', r'code="([a-z_]+)"', r'error_response\("([a-z_]+)"',
                r'^\s+code = "([a-z_]+)"', r', \d{3}, "([a-z_]+)"\)', r'code: str = "([a-z_]+)"']
    found = set()
    for path in [*(root / "app").rglob("*.py"), *(root / "geovision").rglob("*.py")]:
        text = path.read_text()
        for pattern in patterns:
            found |= set(re.findall(pattern, text, re.M))
        found |= {name.lower() for name in re.findall(r"ErrorCode\.([A-Z_]+)\b", text)}
    return found


def test_every_error_code_is_listed_in_the_openapi_document_and_the_docs(client):
    from pathlib import Path

    from app.errors import CODES, ERROR_CODES
    from app.tasks.registry import registered

    options = {code for handler in registered(client.application).values() for code in handler.options_model.error_codes()}
    assert {"invalid_threshold", "invalid_slice", "invalid_domain", "invalid_k", "invalid_viewpoint"} <= options
    raised = _raised_codes() | set(CODES.values()) | options
    assert {"invalid_request", "unknown_model", "gallery_stale"} <= raised
    assert raised <= set(ERROR_CODES), raised - set(ERROR_CODES)
    spec = client.get("/api/v1/openapi.json").get_json()
    assert client.application.extensions["error_codes"] == ERROR_CODES     # the released tasks declare no new code
    assert spec["components"]["schemas"]["ErrorCode"]["enum"] == list(ERROR_CODES)
    docs = (Path(__file__).resolve().parent.parent / "docs" / "API.md").read_text()
    import re
    table = dict(re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", docs, re.M))
    assert table == {code: str(status) for code, (status, _) in ERROR_CODES.items()}


def test_an_error_code_outside_the_table_is_refused_and_the_status_comes_from_it(app):
    from app.errors import ERROR_CODES, ApiError
    from app.tasks.registry import registered

    with pytest.raises(ValueError, match="not in app.errors.ERROR_CODES"):
        ApiError("no_such_code", "typo")
    assert ApiError("one_file", "two files").status == 400 and ApiError("too_many_jobs", "busy").status == 429
    for task in ("similarity", "whales"):   # codes built from the gallery's label field are listed too
        field = registered(app)[task].gallery_label_field
        assert {f"missing_{field}", f"invalid_{field}"} <= set(ERROR_CODES)
