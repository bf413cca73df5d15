"""Shared files for several front ends (app/storage.py): two apps with their own local folders, one
database and one S3-compatible object store (moto's server, a real HTTP S3 endpoint). What one
front end wrote (answers, result pictures, SEG-Y volumes, galleries, job inputs) is served by the
other; queued jobs are claimed by exactly one front end."""
from __future__ import annotations

import io
import socket
from pathlib import Path

import numpy as np
import pytest

from geovision.tiling import tile_count

from .conftest import make_app, png_bytes, rock_png, survey

moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (requirements-dev.txt)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A local S3-compatible server with one bucket; yields the app's storage settings."""
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "test", "secret": "test",
               "client_kwargs": {"region_name": "us-east-1"}}
    import boto3

    boto3.client("s3", endpoint_url=options["endpoint_url"], aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket="geovision-test")
    yield options
    server.stop()


@pytest.fixture
def front_ends(tiny_model_dir, tmp_path, s3_endpoint):
    """Two apps ("front ends") on one SQLite database and one bucket, each with its own folders."""
    url = f"s3://geovision-test/{tmp_path.name}"
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    apps = [make_app(tiny_model_dir, tmp_path / name, SQLALCHEMY_DATABASE_URI=database, STORAGE_URL=url,
                     STORAGE_OPTIONS=s3_endpoint, GALLERY_POLL_S=0, SYNC_MAX_TILES=4)
            for name in ("a", "b")]
    yield apps
    for app in apps:
        app.extensions["jobs"].pool.shutdown(wait=True, cancel_futures=True)
        app.extensions["engine"].close()


SECTION = np.tile(np.linspace(20, 230, 300, dtype=np.uint8), (202, 1))   # 202 x 300: 15 tiles


def test_an_answer_of_one_front_end_is_served_by_the_other(front_ends):
    a, b = (app.test_client() for app in front_ends)
    tile = png_bytes(np.tile(np.linspace(0, 255, 101, dtype=np.uint8), (101, 1)))
    answer = a.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(tile), "t.png")]}).get_json()["results"][0]
    mask_path = answer["mask_url"].removeprefix("http://localhost")
    mask_a = a.get(mask_path)
    assert mask_a.status_code == 200
    assert not list(Path(front_ends[1].config["UPLOAD_FOLDER"]).rglob("mask.png"))   # B has no copy yet
    mask_b = b.get(mask_path)                                     # copied from the store on first read
    assert mask_b.status_code == 200 and mask_b.data == mask_a.data
    overlay = b.get(answer["overlay_url"].removeprefix("http://localhost"))   # drawn from fetched files
    assert overlay.status_code == 200 and overlay.mimetype == "image/png"
    figure_url = answer["mask_url"].removeprefix("http://localhost").replace("mask.png", "figure.png")
    figure = b.get(figure_url)                     # drawn by B on first view and published by the recorder
    assert figure.status_code == 200 and figure.mimetype == "image/png"
    folder_a = Path(front_ends[0].config["UPLOAD_FOLDER"])
    assert not list(folder_a.rglob("figure.png"))
    with pytest.MonkeyPatch.context() as patch:      # A must not draw it again: it reads B's published copy
        patch.setattr("app.salt.result_figures.overlay_figure", lambda *a: pytest.fail("drawn twice"))
        assert a.get(figure_url).data == figure.data and list(folder_a.rglob("figure.png"))
    page = b.get(f"/salt/result/{answer['prediction_id']}")
    assert page.status_code == 200 and b"t.png" in page.data
    assert b.get(mask_path.replace(answer["prediction_id"], "f" * 32)).status_code == 404


def test_a_segy_volume_stored_by_one_front_end_is_sliced_by_the_other(front_ends, tmp_path):
    a, b = (app.test_client() for app in front_ends)
    path = tmp_path / "s.sgy"
    survey(path)
    first = a.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(path.read_bytes()), "s.sgy")],
                                                  "slice": "inline:2"}).get_json()["results"][0]
    again = b.post("/api/v1/salt/segment", data={"segy_id": first["segy_id"], "slice": "inline:2"}).get_json()
    assert again["results"][0]["rle_mask"] == first["rle_mask"]
    copy = b.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(path.read_bytes()), "copy.sgy")],
                                                 "slice": "inline:2"}).get_json()["results"][0]
    assert copy["segy_id"] == first["segy_id"]                   # the store's sha256 index knew it


def test_a_gallery_built_or_extended_on_one_front_end_is_searched_on_the_other(front_ends, rock_folder):
    from app.gallery import store

    a_app, b_app = front_ends

    def matches(app) -> list[dict]:
        search = {"image": [(io.BytesIO(rock_png("gneiss")), "q.png")], "k": "100"}
        return app.test_client().post("/api/v1/similarity/search", data=search).get_json()["results"][0]["matches"]

    assert a_app.test_cli_runner().invoke(args=["gallery", "build", "similarity", "--data", str(rock_folder)]).exit_code == 0
    assert len(matches(b_app)) == 48                             # B loaded A's build from the store
    added = a_app.test_cli_runner().invoke(args=["gallery", "add", "similarity", "--label", "gneiss",
                                                 str(next((rock_folder / "gneiss").iterdir()))])
    assert added.exit_code == 0, added.output
    assert len(matches(b_app)) == 49                             # and reloaded A's new version
    with a_app.app_context():
        version_a = store().get("similarity").version
    with b_app.app_context():
        assert store().get("similarity").version == version_a
    assert b_app.test_client().get("/similarity/gallery/48.png").status_code == 200


def test_a_whale_enrolled_on_one_front_end_is_shown_by_the_other(front_ends, whale_folder):
    a_app, b_app = front_ends
    assert a_app.test_cli_runner().invoke(args=["gallery", "build", "whales", "--data", str(whale_folder)]).exit_code == 0
    photo = next((whale_folder / "images").iterdir())
    a_app.config["ADMIN_TOKEN"] = "secret"
    enrolled = a_app.test_client().post("/api/v1/admin/gallery/whales", headers={"Authorization": "Bearer secret"},
                                        data={"whale_id": "w-new", "image": [(io.BytesIO(photo.read_bytes()), "p.jpg")]})
    assert enrolled.status_code == 200, enrolled.data
    size = enrolled.get_json()["gallery_size"]
    kept = list((Path(a_app.config["GALLERY_FOLDER"]) / "enrolled-whales").iterdir())
    assert len(kept) == 1
    kept[0].unlink()                                             # B runs on another machine: only the store has it
    thumbnail = b_app.test_client().get(f"/whales/gallery/{size - 1}.jpg")   # the photo A kept, fetched by B
    assert thumbnail.status_code == 200 and thumbnail.mimetype == "image/jpeg"


def test_a_queued_job_is_claimed_once_and_reported_by_either_front_end(front_ends, monkeypatch):
    from app import jobs
    from app.records import Job, Prediction

    a_app, b_app = front_ends
    monkeypatch.setattr(a_app.extensions["jobs"], "submit", lambda job_id: None)   # A queues, then goes away
    a = a_app.test_client()
    queued = a.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(png_bytes(SECTION)), "s.png")]})
    assert queued.status_code == 202
    job_id = queued.get_json()["job_id"]
    with a_app.app_context():
        assert jobs.claim("0" * 32) is False                      # an unknown job is nobody's
    assert b_app.extensions["jobs"].claim_queued() == 1           # B claims it (its input comes from the store)
    b_app.extensions["jobs"].pool.shutdown(wait=True)
    with a_app.app_context():
        assert jobs.claim(job_id) is False                        # already claimed: A cannot run it again
        job = Job.query.filter_by(public_id=job_id).one()
        assert job.status == "done", job.error
        assert Prediction.query.filter_by(public_id=job.result["prediction_id"]).count() == 1
    done = a.get(f"/api/v1/salt/jobs/{job_id}").get_json()        # reported by the front end that queued it
    assert done["status"] == "done" and done["tiles_done"] == done["tiles_total"] == tile_count(202, 300)
    assert a.get(done["mask_url"].removeprefix("http://localhost")).status_code == 200


def test_a_bad_storage_url_is_refused_at_start(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="STORAGE_URL"):
        make_app(tiny_model_dir, tmp_path, STORAGE_URL="nosuchprotocol://bucket/x")


def test_ready_reports_the_store_and_refuses_traffic_when_it_is_unreachable(front_ends, tiny_model_dir, tmp_path):
    ready = front_ends[0].test_client().get("/api/v1/ready")
    assert ready.status_code == 200 and ready.get_json()["storage"]["reachable"] is True
    dead = {"endpoint_url": f"http://127.0.0.1:{_free_port()}", "key": "x", "secret": "x",
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}
    app = make_app(tiny_model_dir, tmp_path / "dead", STORAGE_URL="s3://nowhere/x", STORAGE_OPTIONS=dead)
    try:
        body = app.test_client().get("/api/v1/ready")
        assert body.status_code == 503
        assert body.get_json()["status"] == "degraded" and body.get_json()["storage"]["reachable"] is False
        assert body.get_json()["errors"]["storage"]
    finally:
        app.extensions["engine"].close()


def test_retention_and_rollback_reach_the_object_store(front_ends, monkeypatch):
    """Retention prunes the store's copies of old prediction folders (any front end's), not only the
    local ones; a record rolled back after its files were published leaves nothing in the store."""
    import time

    from app.extensions import db
    from app.storage import SharedFiles
    from app.uploads import prune_uploads

    a_app, b_app = front_ends
    a, b = a_app.test_client(), b_app.test_client()
    tile = png_bytes(np.tile(np.linspace(0, 255, 101, dtype=np.uint8), (101, 1)))
    answer = a.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(tile), "t.png")]}).get_json()["results"][0]
    files: SharedFiles = a_app.extensions["shared_files"]
    key = f"uploads/{answer['prediction_id'][:2]}/{answer['prediction_id']}"
    assert files.fs.find(files._remote(key))
    assert files.prune("uploads", time.time() - 3600) == 0            # younger than the cutoff: kept
    assert files.fs.find(files._remote(key))
    with a_app.app_context():   # what the retention thread and `flask prune-uploads` run (1 day, in the future)
        monkeypatch.setattr(time, "time", lambda real=time.time: real() + 2 * 86400)
        assert prune_uploads(Path(a_app.config["UPLOAD_FOLDER"]), 1, files) >= 2   # the store's and A's own
        monkeypatch.undo()
    assert not files.fs.find(files._remote(key))
    assert b.get(answer["mask_url"].removeprefix("http://localhost")).status_code == 404

    published = []
    monkeypatch.setattr(files, "publish", lambda path, real=files.publish: (real(path), published.append(path)))
    with a_app.app_context():
        monkeypatch.setattr(db.session, "commit", lambda: (_ for _ in ()).throw(RuntimeError("database down")))
        failed = a.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(tile), "t2.png")]})
    assert failed.status_code == 500 and published
    for folder in published:
        assert not files.fs.find(files._remote(files.key(folder)))
