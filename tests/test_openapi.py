"""The OpenAPI document: valid, complete, served with a local Swagger UI; and 413 draining."""
import io

from openapi_spec_validator import validate

from .conftest import make_app


def api_routes(app) -> set[str]:
    """Every concrete /api/v1 path of the app: generic rules expanded over the registered tasks."""
    tasks = app.extensions["tasks"]
    paths = set()
    for rule in app.url_map.iter_rules():
        path = rule.rule
        if not path.startswith("/api/v1"):
            continue
        if "<task>/<action>" in path:
            paths |= {f"/api/v1/{t.name}/{a}" for t in tasks.values() for a in (t.api.action, *t.api.aliases)}
        elif path.endswith("/<task>/jobs"):
            paths |= {f"/api/v1/{t.name}/jobs" for t in tasks.values() if t.supports_jobs}
        elif path.endswith("/<task>/jobs/<job_id>"):
            paths |= {f"/api/v1/{t.name}/jobs/{{job_id}}" for t in tasks.values() if t.supports_jobs}
        elif path.endswith("/gallery/<task>"):
            paths |= {f"/api/v1/admin/gallery/{t.name}" for t in tasks.values() if t.has_gallery}
        elif path.endswith("/gallery/<task>/rebuild"):
            paths |= {f"/api/v1/admin/gallery/{t.name}/rebuild" for t in tasks.values() if t.has_gallery and t.gallery_data_key}
        else:
            paths.add(path)
    return paths


def test_document_is_valid_and_lists_every_route(app, client):
    spec = client.get("/api/v1/openapi.json").get_json()
    validate(spec)
    assert set(spec["paths"]) == api_routes(app)
    salt = spec["paths"]["/api/v1/salt/segment"]["post"]
    fields = salt["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"image", "threshold", "slice"} <= set(fields)
    result = salt["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["results"]["items"]
    assert {"coverage", "rle_mask", "mask_url"} <= set(result["oneOf"][0]["properties"])
    assert "invalid_threshold" in salt["responses"]["400"]["description"]
    similarity = spec["paths"]["/api/v1/similarity/search"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert similarity["schema"]["properties"]["method"]["enum"] == ["embedding", "pixels", "kmeans"]
    assert spec["paths"]["/api/v1/admin/reload"]["post"]["security"] == [{"admin": []}]


def test_docs_page_uses_local_assets_under_a_csp(client):
    page = client.get("/api/docs")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "http://" not in html and "https://" not in html
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe-eval" not in csp
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/api/docs/assets/{asset}" in html
        assert client.get(f"/api/docs/assets/{asset}").status_code == 200
    assert client.get("/api/docs/assets/index.html").status_code == 404
    assert client.get("/static/api-docs.js").status_code == 200
    page_csp = client.get("/").headers["Content-Security-Policy"]   # other pages: own scripts only, no eval
    assert "script-src 'self';" in page_csp and "unsafe" not in page_csp


def test_a_refused_body_is_drained_up_to_the_bound(tiny_model_dir, tmp_path):
    body = {"image": [(io.BytesIO(bytes(200_000)), "big.png")]}
    for drain, closes in ((1 << 20, False), (0, True)):
        app = make_app(tiny_model_dir, tmp_path / str(drain), MAX_CONTENT_LENGTH=100_000, MAX_DRAIN_BYTES=drain)
        try:
            response = app.test_client().post("/api/v1/rocks/classify", data=body)
            assert response.status_code == 413 and response.get_json()["error"]["code"] == "payload_too_large"
            assert (response.headers.get("Connection") == "close") is closes
        finally:
            app.extensions["engine"].close()
        body = {"image": [(io.BytesIO(bytes(200_000)), "big.png")]}
