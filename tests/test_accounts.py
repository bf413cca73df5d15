"""Accounts: two users and an admin, through the pages, v1 and v2; keys, the CLI, /metrics, migration."""
from __future__ import annotations

import base64
import io
import re

import pytest

from tests.conftest import half_bright_tile, make_app, png_bytes, rock_png, survey


@pytest.fixture
def auth_app(tiny_model_dir, tmp_path):
    app = make_app(tiny_model_dir, tmp_path, AUTH_REQUIRED=True, SYNC_MAX_TILES=4, JOB_POLL_S=0.0)
    runner = app.test_cli_runner()
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        result = runner.invoke(args=["users", "create", name, *(["--admin"] if admin else [])],
                               input="correct horse battery\ncorrect horse battery\n")
        assert result.exit_code == 0, result.output
    app.keys = {name: runner.invoke(args=["users", "key", name]).output.strip().splitlines()[-1]
                for name in ("alice", "bob", "root")}
    yield app
    app.extensions["engine"].close()


def bearer(app, name: str) -> dict:
    return {"Authorization": f"Bearer {app.keys[name]}"}


def sign_in(app, name: str):
    client = app.test_client()
    response = client.post("/login", data={"name": name, "password": "correct horse battery"})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def test_cli_reads_the_password_twice_and_prints_a_key_last(auth_app):
    runner = auth_app.test_cli_runner()
    differ = runner.invoke(args=["users", "create", "carol"], input="first-password\nsecond-password\n")
    assert differ.exit_code != 0 and "differ" in differ.output
    short = runner.invoke(args=["users", "create", "carol"], input="short\nshort\n")
    assert short.exit_code != 0 and "8 characters" in short.output
    taken = runner.invoke(args=["users", "create", "alice"], input="correct horse battery\ncorrect horse battery\n")
    assert taken.exit_code != 0 and "taken" in taken.output
    key = auth_app.keys["alice"]
    assert re.fullmatch(r"gv_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", key)
    from app.accounts import Account, ApiKey
    from app.extensions import db

    with auth_app.app_context():
        alice = db.session.scalar(db.select(Account).where(Account.name == "alice"))
        assert alice.password_hash.startswith("scrypt:") and "correct horse" not in alice.password_hash
        stored = db.session.scalar(db.select(ApiKey).where(ApiKey.account_id == alice.id))
        assert stored.key_sha256 == ApiKey.digest(key) and key not in stored.key_sha256


def test_nothing_is_served_without_credentials(auth_app):
    client = auth_app.test_client()
    for path in ("/", "/history", "/salt/", "/rocks/", "/whales/", "/models"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path
    api = client.post("/api/v1/rocks/classify", data={"image": [(io.BytesIO(rock_png("gneiss")), "r.png")]})
    assert api.status_code == 401 and api.get_json()["error"]["code"] == "unauthorized"
    assert api.headers["WWW-Authenticate"] == "Bearer"
    v2 = client.post("/v2/models/rocks/infer", json={"inputs": []})
    assert v2.status_code == 401 and v2.get_json()["code"] == "unauthorized"
    wrong = client.post("/api/v1/rocks/classify", headers={"Authorization": "Bearer gv_00000000_" + "x" * 43})
    assert wrong.status_code == 401
    for public in ("/api/v1/health", "/v2/health/live", "/login", "/api/v1/openapi.json"):
        assert client.get(public).status_code == 200, public
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(auth_app, "root")).status_code == 200
    bad = client.post("/login", data={"name": "alice", "password": "wrong password"})
    assert bad.status_code == 401 and "wrong user name or password" in bad.get_data(as_text=True)


def test_users_see_only_their_own_results_history_and_files(auth_app):
    tile = png_bytes(half_bright_tile())
    alice_api = auth_app.test_client()
    answer = alice_api.post("/api/v1/salt/segment", headers=bearer(auth_app, "alice"),
                            data={"image": [(io.BytesIO(tile), "alice-tile.png")]}).get_json()["results"][0]
    pid = answer["prediction_id"]
    assert answer["mask_url"].endswith(f"/salt/files/{pid}/mask.png")
    bob_page = auth_app.test_client()
    bob_page.post("/login", data={"name": "bob", "password": "correct horse battery"})
    bob_page.post("/rocks/", data={"image": [(io.BytesIO(rock_png("marble")), "bob-rock.png")]},
                  content_type="multipart/form-data")
    alice_page = sign_in(auth_app, "alice")
    mine, theirs = alice_page.get("/history").get_data(as_text=True), bob_page.get("/history").get_data(as_text=True)
    assert "alice-tile.png" in mine and "bob-rock.png" not in mine
    assert "bob-rock.png" in theirs and "alice-tile.png" not in theirs
    for path in (f"/salt/result/{pid}", f"/salt/files/{pid}/mask.png", f"/salt/files/{pid}/input.png",
                 f"/salt/files/{pid}/overlay.png", f"/salt/files/{pid}/mask.npy", f"/salt/submission.csv?id={pid}"):
        assert alice_page.get(path).status_code == 200, path
        assert bob_page.get(path).status_code == 404, path
    admin = sign_in(auth_app, "root")
    everything = admin.get("/history").get_data(as_text=True)
    assert "alice-tile.png" in everything and "bob-rock.png" in everything
    assert admin.get(f"/salt/files/{pid}/mask.png").status_code == 200


def test_jobs_and_segy_volumes_belong_to_their_owner(auth_app, tmp_path):
    big = png_bytes(half_bright_tile((400, 400)))
    created = auth_app.test_client().post("/api/v1/salt/jobs", headers=bearer(auth_app, "alice"),
                                          data={"image": [(io.BytesIO(big), "big.png")]})
    assert created.status_code == 202
    job_id = created.get_json()["job_id"]
    alice, bob = bearer(auth_app, "alice"), bearer(auth_app, "bob")
    client = auth_app.test_client()
    assert client.get(f"/api/v1/salt/jobs/{job_id}", headers=alice).status_code == 200
    assert client.get(f"/api/v1/salt/jobs/{job_id}", headers=bob).status_code == 404
    assert client.delete(f"/api/v1/salt/jobs/{job_id}", headers=bob).status_code == 404
    assert sign_in(auth_app, "bob").get(f"/salt/jobs/{job_id}").status_code == 404
    path = tmp_path / "s.sgy"
    survey(path)
    first = client.post("/api/v1/salt/segment", headers=alice, data={
        "image": [(io.BytesIO(path.read_bytes()), "s.sgy")], "slice": "inline:2"}).get_json()["results"][0]
    segy_id = first["segy_id"]
    stolen = client.post("/api/v1/salt/segment", headers=bob, data={"segy_id": segy_id, "slice": "inline:3"})
    assert stolen.status_code == 400 and stolen.get_json()["error"]["code"] == "invalid_segy"
    assert sign_in(auth_app, "bob").get(f"/salt/segy/{segy_id}").status_code == 404
    assert sign_in(auth_app, "alice").get(f"/salt/segy/{segy_id}").status_code == 200
    same_bytes = client.post("/api/v1/salt/segment", headers=bob, data={
        "image": [(io.BytesIO(path.read_bytes()), "copy.sgy")], "slice": "inline:2"}).get_json()["results"][0]
    assert same_bytes["segy_id"] != segy_id       # the same bytes from bob: bob's own volume


def test_v2_rows_belong_to_the_key_and_revoked_keys_stop_working(auth_app):
    from app.extensions import db
    from app.records import Prediction

    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(rock_png("schist")).decode()]}]}
    client = auth_app.test_client()
    response = client.post("/v2/models/rocks/infer", json=body, headers=bearer(auth_app, "bob"))
    assert response.status_code == 200
    with auth_app.app_context():
        (row,) = db.session.scalars(db.select(Prediction)).all()
        from app.accounts import Account
        assert db.session.get(Account, row.owner_id).name == "bob"
    assert "image[0]" not in sign_in(auth_app, "alice").get("/history").get_data(as_text=True)
    assert "image[0]" in sign_in(auth_app, "bob").get("/history").get_data(as_text=True)
    prefix = auth_app.keys["bob"].split("_")[1]
    assert auth_app.test_cli_runner().invoke(args=["users", "revoke", prefix]).exit_code == 0
    again = client.post("/v2/models/rocks/infer", json=body, headers=bearer(auth_app, "bob"))
    assert again.status_code == 401


def test_admin_page_creates_users_and_keys_and_the_admin_key_opens_the_admin_api(auth_app):
    alice = sign_in(auth_app, "alice")
    assert alice.get("/admin/users").status_code == 403
    assert alice.post("/api/v1/admin/reload", headers=bearer(auth_app, "alice")).status_code == 401
    assert auth_app.test_client().post("/api/v1/admin/reload", headers=bearer(auth_app, "root")).status_code == 200
    admin = sign_in(auth_app, "root")
    created = admin.post("/admin/users", data={"user-name": "dave", "user-password": "a long password",
                                               "user-confirm": "a long password", "user-submit": "Create user"})
    assert created.status_code == 302
    assert "dave" in admin.get("/admin/users").get_data(as_text=True)
    dave = sign_in_as(auth_app, "dave", "a long password")
    page = dave.post("/account", data={"key-label": "laptop", "key-submit": "New API key"}, follow_redirects=True)
    key = re.search(r"gv_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", page.get_data(as_text=True)).group(0)
    ok = auth_app.test_client().post("/api/v1/rocks/classify", headers={"Authorization": f"Bearer {key}"},
                                     data={"image": [(io.BytesIO(rock_png("gneiss")), "r.png")]})
    assert ok.status_code == 200
    dave_id = re.search(r'name="active-account" value="(\d+)"[^<]*<button[^>]*>Deactivate',
                        admin.get("/admin/users").get_data(as_text=True).split("dave")[1]).group(1)
    assert admin.post("/admin/users", data={"active-account": dave_id, "active-submit": "1"}).status_code == 302
    refused = auth_app.test_client().post("/api/v1/rocks/classify", headers={"Authorization": f"Bearer {key}"},
                                          data={"image": [(io.BytesIO(rock_png("gneiss")), "r.png")]})
    assert refused.status_code == 401
    assert auth_app.test_client().post("/login", data={"name": "dave", "password": "a long password"}).status_code == 401
    assert admin.post("/admin/users", data={"active-account": dave_id, "active-submit": "1"}).status_code == 302
    assert sign_in_as(auth_app, "dave", "a long password").get("/account").status_code == 200


def sign_in_as(app, name: str, password: str):
    client = app.test_client()
    assert client.post("/login", data={"name": name, "password": password}).status_code == 302
    return client


def test_the_demo_mode_needs_no_sign_in_and_says_so(app, client):
    page = client.get("/").get_data(as_text=True)
    assert "Demo mode" in page and "visible to everyone" in page
    answer = client.post("/api/v1/rocks/classify", data={"image": [(io.BytesIO(rock_png("gneiss")), "r.png")]})
    assert answer.status_code == 200
    from app.accounts import ANONYMOUS, Account
    from app.extensions import db
    from app.records import Prediction

    with app.app_context():
        row = db.session.scalars(db.select(Prediction)).one()
        assert db.session.get(Account, row.owner_id).name == ANONYMOUS
    assert client.get("/metrics").status_code == 200


def test_login_follows_only_local_next_paths(auth_app):
    client = auth_app.test_client()
    response = client.post("/login?next=https://evil.example/x", data={"name": "alice",
                                                                      "password": "correct horse battery"})
    assert response.headers["Location"] == "/"
    response = client.post("/login?next=/history", data={"name": "alice", "password": "correct horse battery"})
    assert response.headers["Location"] == "/history"


def test_job_limits_count_per_account_and_per_forwarded_address(auth_app, tiny_model_dir, tmp_path):
    """Behind one address (a proxy, a NAT), each account has its own JOB_MAX_PER_CLIENT; without
    sign-in the address counts, read from X-Forwarded-For only when TRUSTED_PROXIES says so."""
    from tests.test_jobs import slow_down

    slow_down(auth_app, 0.05)
    auth_app.config.update(JOB_MAX_PER_CLIENT=1)
    big = png_bytes(half_bright_tile((400, 400)))

    def submit(app, headers):
        return app.test_client().post("/api/v1/salt/jobs", headers=headers, data={"image": [(io.BytesIO(big), "b.png")]})

    assert submit(auth_app, bearer(auth_app, "alice")).status_code == 202
    refused = submit(auth_app, bearer(auth_app, "alice"))
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "too_many_jobs"
    assert submit(auth_app, bearer(auth_app, "bob")).status_code == 202      # same address, other account
    for proxies, second in ((1, 202), (0, 429)):
        demo = make_app(tiny_model_dir, tmp_path / f"demo{proxies}", SYNC_MAX_TILES=4, JOB_MAX_PER_CLIENT=1,
                        JOB_POLL_S=0.0, TRUSTED_PROXIES=proxies)
        try:
            slow_down(demo, 0.05)
            assert submit(demo, {"X-Forwarded-For": "203.0.113.7"}).status_code == 202
            assert submit(demo, {"X-Forwarded-For": "198.51.100.9"}).status_code == second
        finally:
            demo.extensions["engine"].close()


def test_sign_in_attempts_are_limited_per_address(auth_app):
    """After LOGIN_RATE_LIMIT attempts from one address, even the right password is refused (429,
    Retry-After) until the window passes; another address still signs in."""
    auth_app.config.update(LOGIN_RATE_LIMIT="3 per minute")
    client = auth_app.test_client()
    for _ in range(3):
        assert client.post("/login", data={"name": "alice", "password": "guess"}).status_code == 401
    refused = client.post("/login", data={"name": "alice", "password": "correct horse battery"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "too many sign-in attempts" in refused.get_data(as_text=True)
    elsewhere = auth_app.test_client().post("/login", data={"name": "alice", "password": "correct horse battery"},
                                            environ_base={"REMOTE_ADDR": "192.0.2.44"})
    assert elsewhere.status_code == 302
    assert client.get("/login").status_code == 200     # only the attempts are counted


def test_the_bootstrap_admin_token_works_with_sign_in_required(auth_app):
    """With AUTH_REQUIRED on (production), ADMIN_TOKEN adds to a gallery and its rows belong to the
    admin-token account (an inactive admin: it cannot sign in); a wrong token stays 401."""
    from app.accounts.auth import TOKEN_ADMIN
    from app.accounts.models import Account
    from app.extensions import db

    auth_app.config["ADMIN_TOKEN"] = "bootstrap-token-for-tests"
    client = auth_app.test_client()
    data = {"label": "marble", "image": [(io.BytesIO(rock_png("marble")), "m.png")]}
    wrong = client.post("/api/v1/admin/gallery/similarity", data=data, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    data = {"label": "marble", "image": [(io.BytesIO(rock_png("marble")), "m.png")]}
    done = client.post("/api/v1/admin/gallery/similarity", data=data,
                       headers={"Authorization": "Bearer bootstrap-token-for-tests"})
    assert done.status_code == 200, done.get_json()
    with auth_app.app_context():
        account = db.session.scalar(db.select(Account).where(Account.name == TOKEN_ADMIN))
        assert account is not None and account.is_admin and not account.active
    refused = client.post("/login", data={"name": TOKEN_ADMIN, "password": "anything at all"})
    assert refused.status_code != 302


def test_a_keys_last_use_is_written_at_most_once_a_minute(auth_app):
    """Each API-key request used to commit its last use: now the first request writes it and the
    next ones within KEY_LAST_USED_EVERY_S leave the row alone (0: every request writes)."""
    from app.accounts.models import ApiKey
    from app.extensions import db

    def last_used():
        with auth_app.app_context():
            return [k.last_used_at for k in db.session.scalars(db.select(ApiKey)) if k.account.name == "alice"][0]

    client = auth_app.test_client()
    assert client.get("/api/v1/models", headers=bearer(auth_app, "alice")).status_code == 200
    first = last_used()
    assert first is not None
    client.get("/api/v1/models", headers=bearer(auth_app, "alice"))
    assert last_used() == first
    auth_app.config["KEY_LAST_USED_EVERY_S"] = 0
    client.get("/api/v1/models", headers=bearer(auth_app, "alice"))
    assert last_used() > first
