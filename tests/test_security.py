"""CSRF, admin token, secret key, security headers, stored-file names, retention, no tracebacks."""
import io
import os
import re
import time

import pytest

from app import create_app
from app.uploads import prune_uploads

from .conftest import half_bright_tile, make_app, png_bytes, rock_png

HEADERS = ["Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"]


@pytest.mark.parametrize("path", ["/", "/salt/", "/rocks/", "/history", "/api/v1/health", "/nope"])
def test_security_headers_everywhere(client, path):
    resp = client.get(path)
    for header in HEADERS:
        assert header in resp.headers, (path, header)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


@pytest.mark.parametrize("page,files", [("/salt/", lambda: png_bytes(half_bright_tile())),
                                        ("/rocks/", lambda: rock_png("gneiss"))])
def test_csrf_on_every_form(tiny_model_dir, tmp_path, page, files):
    app = make_app(tiny_model_dir, tmp_path, WTF_CSRF_ENABLED=True)
    try:
        client = app.test_client()
        data = {"image": [(io.BytesIO(files()), "a.png")]}
        refused = client.post(page, data=data, content_type="multipart/form-data")
        assert refused.status_code == 400 and "CSRF" in refused.get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get(page).get_data(as_text=True))
        data = {"image": [(io.BytesIO(files()), "a.png")], "csrf_token": token.group(1)}
        assert client.post(page, data=data, content_type="multipart/form-data").status_code in (200, 302)
    finally:
        app.extensions["engine"].close()


def test_admin_actions_refused_without_an_admin(client):
    """The demo mode's anonymous user is no admin: without an admin key (or ADMIN_TOKEN) the admin API is 401."""
    for path in ("/api/v1/admin/reload", "/api/v1/admin/gallery/similarity"):
        response = client.post(path)
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"


def test_admin_actions_need_the_token(tiny_model_dir, tmp_path):
    app = make_app(tiny_model_dir, tmp_path, ADMIN_TOKEN="s3cret-token-for-tests")
    try:
        client = app.test_client()
        add = {"image": [(io.BytesIO(rock_png("marble")), "m.png")], "label": "marble"}
        assert client.post("/api/v1/admin/reload").status_code == 401
        assert client.post("/api/v1/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/api/v1/admin/gallery/similarity", data=add,
                           content_type="multipart/form-data").status_code == 401
        auth = {"Authorization": "Bearer s3cret-token-for-tests"}
        reloaded = client.post("/api/v1/admin/reload", headers=auth)
        assert reloaded.status_code == 200 and reloaded.get_json()["status"] == "ready"
        add = {"image": [(io.BytesIO(rock_png("marble")), "m.png")], "label": "marble"}
        added = client.post("/api/v1/admin/gallery/similarity", data=add, headers=auth,
                            content_type="multipart/form-data")
        assert added.status_code == 200 and added.get_json()["gallery_size"] == 1
        search = client.post("/api/v1/similarity/search", data={"image": [(io.BytesIO(rock_png("marble")), "q.png")]},
                             content_type="multipart/form-data").get_json()
        assert search["results"][0]["matches"][0]["label"] == "marble"
    finally:
        app.extensions["engine"].close()


@pytest.mark.parametrize("key", ["dev-only-change-me", "changeme", "short"])
def test_production_refuses_weak_secret_key(tiny_model_dir, tmp_path, key, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", key)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"SECRET_KEY": key, "MODEL_DIR": str(tiny_model_dir), "INSTANCE_PATH": str(tmp_path / "instance"),
                    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}"})


def test_production_without_key_generates_one(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    app = create_app({"MODEL_DIR": str(tmp_path / "none"), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
                      "INSTANCE_PATH": str(tmp_path / "instance")})
    key = app.config["SECRET_KEY"]
    assert app.instance_path == str(tmp_path / "instance")
    assert len(key) == 64 and key != "dev-only-change-me"
    assert (os.stat(os.path.join(app.instance_path, "secret_key")).st_mode & 0o077) == 0
    assert not app.debug


def test_uploads_live_outside_static_under_generated_names(app, client):
    client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(png_bytes(half_bright_tile())), "client.png")]},
                content_type="multipart/form-data")
    from pathlib import Path
    root = Path(app.config["UPLOAD_FOLDER"])
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files and not any("client" in p.name for p in files)
    assert not str(root.resolve()).startswith(str(Path(app.static_folder).resolve()))
    assert client.get("/salt/files/../../secret_key").status_code == 404


def test_retention_prunes_old_prediction_folders(tmp_path):
    old, new = tmp_path / "ab" / "abcdef", tmp_path / "cd" / "cdef01"
    for folder in (old, new):
        folder.mkdir(parents=True)
        (folder / "input.png").write_bytes(b"x")
    past = time.time() - 40 * 86400
    os.utime(old, (past, past))
    assert prune_uploads(tmp_path, 30) == 1
    assert not old.exists() and new.exists()
    assert prune_uploads(tmp_path, 0) == 0


def test_no_stack_traces_in_error_responses(app, client):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    app.testing = False   # as in production: errors are handled, not propagated
    app.config["PROPAGATE_EXCEPTIONS"] = False
    for accept in ("application/json", "text/html"):
        resp = client.get("/boom", headers={"Accept": accept})
        text = resp.get_data(as_text=True)
        assert resp.status_code == 500
        assert "Traceback" not in text and "secret internals" not in text
