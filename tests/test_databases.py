"""The database layer on SQLite and on a real PostgreSQL: migrations, records, jobs, concurrent
writers, rows deleted with a failed request. Each test runs once per backend (``db_app``)."""
import io
import threading
import time

import numpy as np

from geovision.tiling import tile_count

from .conftest import fail_nth_batch, half_bright_tile, png_bytes


def test_migrations_create_the_tables(db_app):
    from sqlalchemy import inspect

    from app.extensions import db

    with db_app.app_context():
        tables = set(inspect(db.engine).get_table_names())
        assert {"prediction", "job", "whale_decision", "account", "api_key", "alembic_version"} <= tables
        assert db.session.execute(db.text("select version_num from alembic_version")).scalar() == "d7a3b5c9e2f1"
        assert "heartbeat_at" in {c["name"] for c in inspect(db.engine).get_columns("job")}   # job leases


def test_rows_older_than_accounts_belong_to_anonymous(db_app):
    """Down to the revision before accounts, rows written there, up again: they belong to ``anonymous``."""
    from flask_migrate import downgrade, upgrade

    from app.accounts import ANONYMOUS, Account
    from app.extensions import db
    from app.records import Job, Prediction

    with db_app.app_context():
        downgrade(revision="9a4f6c2e1b7d")
        db.session.execute(db.text(
            "INSERT INTO prediction (public_id, task, filename, input_sha256, width, height, model_name, model_version, "
            "result, decode_ms, inference_ms, total_ms, created_at) VALUES ('a1', 'rocks', 'old.png', 'x', 1, 1, 'm', "
            "'1', '{}', 0, 0, 0, CURRENT_TIMESTAMP)"))
        db.session.execute(db.text(
            "INSERT INTO job (public_id, task, status, client, filename, inputs, tiles_done, tiles_total, worker, "
            "created_at) VALUES ('j1', 'salt', 'done', '127.0.0.1', 'old.png', '{}', 1, 1, 'w', CURRENT_TIMESTAMP)"))
        db.session.commit()
        upgrade()
        anonymous = db.session.scalar(db.select(Account).where(Account.name == ANONYMOUS))
        assert anonymous is not None and anonymous.password_hash is None and not anonymous.active
        assert db.session.scalar(db.select(Prediction.owner_id).where(Prediction.public_id == "a1")) == anonymous.id
        assert db.session.scalar(db.select(Job.owner_id).where(Job.public_id == "j1")) == anonymous.id


def test_concurrent_answers_each_get_exactly_one_row(db_app):
    from app.records import Prediction

    def post(i: int) -> int:
        tile = png_bytes(np.roll(half_bright_tile(), i, axis=1))
        return db_app.test_client().post("/api/v1/salt/segment",
                                         data={"image": [(io.BytesIO(tile), f"t{i}.png")]}).status_code

    results: list[int] = []
    threads = [threading.Thread(target=lambda i=i: results.append(post(i))) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 16
    with db_app.app_context():
        rows = Prediction.query.filter_by(task="salt").all()
        assert sorted(r.filename for r in rows) == sorted(f"t{i}.png" for i in range(16))
        assert len({r.public_id for r in rows}) == 16
    history = db_app.test_client().get("/history?task=salt")
    assert history.status_code == 200 and "% salt" in history.get_data(as_text=True)


def test_a_request_whose_forward_pass_fails_keeps_no_rows(db_app, monkeypatch):
    from app.records import Prediction

    fail_nth_batch(monkeypatch, 1, "salt")      # the three files' rows go to the batcher in one call
    files = [(io.BytesIO(png_bytes(half_bright_tile())), f"{i}.png") for i in range(3)]
    assert db_app.test_client().post("/api/v1/salt/segment", data={"image": files}).status_code == 503
    with db_app.app_context():
        assert Prediction.query.count() == 0


def test_a_job_is_a_row_that_reaches_done(db_app):
    from app.records import Job

    client = db_app.test_client()
    section = np.tile(np.linspace(20, 230, 400, dtype=np.uint8), (300, 1))
    job = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(png_bytes(section)), "s.png")]}).get_json()
    url = job["status_url"].removeprefix("http://localhost")
    deadline = time.time() + 30
    while (body := client.get(url).get_json())["status"] not in ("done", "failed") and time.time() < deadline:
        time.sleep(0.05)
    assert body["status"] == "done" and body["tiles_done"] == body["tiles_total"] == tile_count(300, 400)
    with db_app.app_context():
        row = Job.query.filter_by(public_id=job["job_id"]).one()
        assert row.result["prediction_id"] == body["prediction_id"] and row.finished_at is not None
