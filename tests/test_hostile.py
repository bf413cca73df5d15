"""Hostile inputs that got through (issue: whose data is it): each answered cleanly, nothing left on disk."""
from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import segyio

from .conftest import DATA, make_app, png_bytes

REAL = DATA / "seismic-real"


def _stored_volumes(app) -> list:
    root = app.config["UPLOAD_FOLDER"]
    from pathlib import Path

    return [p for p in (Path(root) / "segy").glob("*/volume.sgy")] if (Path(root) / "segy").is_dir() else []


@pytest.fixture
def hostile_app(tiny_model_dir, tmp_path):
    app = make_app(tiny_model_dir, tmp_path, SYNC_MAX_TILES=4, JOB_MAX_PER_CLIENT=2, JOB_MAX_ACTIVE=8)
    yield app
    app.extensions["jobs"].pool.shutdown(wait=True, cancel_futures=True)
    app.extensions["engine"].close()


def test_a_small_segy_cannot_size_a_huge_grid(hostile_app, tmp_path):
    """20,000 traces of 2 samples on a diagonal (inline 1000+i, crossline 5000+i): a time slice
    would be a 20000 x 20000 grid; refused from the headers, before anything is allocated."""
    path = tmp_path / "diagonal.sgy"
    spec = segyio.spec()
    spec.format, spec.samples, spec.tracecount = 5, [0, 4], 20_000
    with segyio.create(str(path), spec) as f:
        for i in range(20_000):
            f.header[i] = {segyio.su.iline: 1000 + i, segyio.su.xline: 5000 + i}
        f.trace = np.ones((20_000, 2), np.float32)
    client = hostile_app.test_client()
    r = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(path.read_bytes()), "d.sgy")], "slice": "time:4"})
    body = r.get_json()
    (result,) = body["results"] if "results" in body else [body]
    assert result["error"]["code"] == "image_too_large"


@pytest.mark.skipif(not (REAL / "f3.sgy").exists(), reason="../shared/data/seismic-real is absent")
@pytest.mark.parametrize("case", ["max_inline", "min_inline", "garbage_trace", "format_0", "format_99"])
def test_damaged_headers_are_invalid_segy_and_leave_nothing(hostile_app, case):
    data = bytearray((REAL / "f3.sgy").read_bytes())
    ns = int.from_bytes(data[3220:3222], "big")
    fmt = int.from_bytes(data[3224:3226], "big")
    trace_len = 240 + ns * {1: 4, 2: 4, 3: 2, 5: 4, 8: 1}[fmt]
    first = bytes(data[3600:3600 + trace_len])
    if case in ("max_inline", "min_inline"):
        for value in ([2**31 - 1] if case == "max_inline" else [-2**31]):
            trace = bytearray(first)
            trace[188:192] = value.to_bytes(4, "big", signed=True)
            data += trace
    elif case == "garbage_trace":
        data += b"\xab" * trace_len
    else:
        data[3224:3226] = (0 if case == "format_0" else 99).to_bytes(2, "big")
    client = hostile_app.test_client()
    r = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(bytes(data)), "f3.sgy")]})
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert r.get_json()["results"][0]["error"]["code"] == "invalid_segy"
    assert _stored_volumes(hostile_app) == []


def test_a_refused_batch_of_jobs_creates_none(hostile_app):
    """Three large images with a limit of 2 jobs per client: 429, and no job was created."""
    section = png_bytes(np.tile(np.linspace(20, 230, 400, dtype=np.uint8), (300, 1)))
    client = hostile_app.test_client()
    r = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(section), f"s{i}.png") for i in range(3)]})
    assert r.status_code == 429 and r.get_json()["error"]["code"] == "too_many_jobs"
    from app.records import Job

    with hostile_app.app_context():
        assert Job.query.count() == 0


def test_concurrent_submits_never_pass_the_limit(hostile_app):
    from app.records import Job

    section = png_bytes(np.tile(np.linspace(20, 230, 400, dtype=np.uint8), (300, 1)))
    batcher = hostile_app.extensions["engine"].batchers["salt"]
    model = batcher.model
    batcher.model = lambda x: (__import__("time").sleep(0.05 * len(x)), model(x))[1]   # jobs stay active
    statuses = []

    def submit():
        client = hostile_app.test_client()
        r = client.post("/api/v1/salt/jobs", data={"image": [(io.BytesIO(section), "s.png")]})
        statuses.append(r.status_code)

    threads = [threading.Thread(target=submit) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(202) == 2 and set(statuses) <= {202, 429}, statuses
    with hostile_app.app_context():
        assert Job.query.count() == 2


@pytest.mark.parametrize("payload, code, status", [
    ("bomb", "image_too_large", 413), ("truncated", "invalid_image", 400)])
def test_bad_large_images_are_refused_before_a_job(hostile_app, payload, code, status):
    from PIL import Image

    if payload == "bomb":
        buf = io.BytesIO()
        Image.new("L", (10_000, 10_000)).save(buf, "PNG")      # 100 MP of zeros: about 100 KB
        data = buf.getvalue()
    else:
        rng = np.random.default_rng(0)
        data = png_bytes(rng.integers(0, 255, (3000, 3000), dtype=np.uint8))
        data = data[:len(data) // 2]
    client = hostile_app.test_client()
    r = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(data), "big.png")]})
    assert r.status_code == status, r.get_data(as_text=True)[:300]
    assert r.get_json()["results"][0]["error"]["code"] == code
    from app.records import Job

    with hostile_app.app_context():
        assert Job.query.count() == 0
