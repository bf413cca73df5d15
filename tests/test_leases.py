"""Job leases: a job whose worker vanished (killed, its container replaced, another host) is taken
back by any front end after JOB_LEASE_S and finished exactly once."""
from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import requests

from bench.server import LiveServer

from .conftest import make_app, png_bytes


def _job(app, public_id: str, worker: str, beat_age_s: float, item: bool = True):
    from app.extensions import db
    from app.records import Job

    with app.app_context():
        beat = datetime.now(UTC) - timedelta(seconds=beat_age_s)
        db.session.add(Job(public_id=public_id, task="salt", status="running", client="t", owner_id=1,
                           filename="s.png", inputs={"item": {"kind": "image"}, "options": {}} if item else {},
                           worker=worker, started_at=beat, heartbeat_at=beat))
        db.session.commit()


def _status(app, public_id: str) -> tuple[str, str]:
    from app.extensions import db
    from app.records import Job

    with app.app_context():
        job = db.session.scalar(db.select(Job).where(Job.public_id == public_id))
        return job.status, job.worker


def test_expired_leases_are_taken_back_by_any_front_end(tiny_model_dir, tmp_path):
    """A running job of another host with no heartbeat for longer than JOB_LEASE_S is queued again
    (one compare-and-set: a second front end finds nothing to take); a fresh lease is left alone; a
    job whose input is gone fails; this process renews the leases of the jobs it runs."""
    from app.jobrunner import WORKER, JobLost, _check_held

    app = make_app(tiny_model_dir, tmp_path, JOB_LEASE_S=30)
    runner = app.extensions["jobs"]
    try:
        _job(app, "a" * 32, "gone-host:4242", beat_age_s=120)
        _job(app, "b" * 32, "other-host:7", beat_age_s=5)
        _job(app, "c" * 32, "gone-host:4243", beat_age_s=120, item=False)
        _job(app, "d" * 32, WORKER, beat_age_s=120)
        runner.running.add("d" * 32)
        assert runner.renew_leases() == 1                              # this process holds d: renewed
        assert runner.take_back_expired() == ["a" * 32]
        assert _status(app, "a" * 32) == ("queued", "")
        assert _status(app, "b" * 32) == ("running", "other-host:7")
        assert _status(app, "c" * 32)[0] == "failed"
        assert _status(app, "d" * 32) == ("running", WORKER)
        assert runner.take_back_expired() == []                        # nothing left to take twice
        with app.app_context():   # a worker that lost its job stops without recording it
            with pytest.raises(JobLost):
                _check_held("b" * 32)
            _check_held("d" * 32)
    finally:
        runner.running.clear()
        app.extensions["engine"].close()


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("hosts", ["one host", "two containers"])
def test_a_front_end_killed_mid_job_is_replaced_by_another(tmp_path, model_dir, postgres_url, hosts):
    """Two front ends on one PostgreSQL database and one upload folder; the one running a section
    job is killed with SIGKILL (master and workers: nothing shuts down cleanly, as when a host dies or
    a container is replaced). The other takes the job back and finishes it: within JOB_LEASE_S + the
    job's own time; one answer recorded, none lost. "two containers": each front end names itself as
    a container does (``JOB_WORKER_HOST``), so the dead one is another host's and only its lease
    expiring lets the job go (a replaced container never comes back under its old name)."""
    import psycopg

    lease = 4.0
    env = {"DATABASE_URL": postgres_url, "SYNC_MAX_TILES": "4", "JOB_CHUNK_ROWS": "8", "JOB_POLL_S": "0.5",
           "JOB_HEARTBEAT_S": "0.5", "JOB_LEASE_S": str(lease), "UPLOAD_FOLDER": str(tmp_path / "uploads")}
    servers = [LiveServer(tmp_path / name, model_dir,
                          env={**env, **({"JOB_WORKER_HOST": f"container-{name}"} if hosts == "two containers" else {})})
               for name in ("a", "b")]
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        section = png_bytes(np.random.default_rng(2).integers(0, 255, (700, 900), dtype=np.uint8))
        job = requests.post(f"{servers[0].url}/api/v1/salt/jobs", files={"image": ("big.png", section)}, timeout=60).json()
        path = "/api/v1/salt/jobs/" + job["job_id"]
        deadline = time.time() + 120
        while requests.get(servers[0].url + path, timeout=10).json()["tiles_done"] == 0:
            assert time.time() < deadline
            time.sleep(0.1)
        with psycopg.connect(dsn) as conn:
            worker = conn.execute("SELECT worker FROM job").fetchone()[0]
        pid = int(worker.rsplit(":", 1)[1])
        holder = next(s for s in servers if pid in _children(s.proc.pid))
        other = servers[1 - servers.index(holder)]
        for p in [holder.proc.pid, *_children(holder.proc.pid)]:
            os.kill(p, signal.SIGKILL)
        killed_at = time.time()
        holder.proc.wait(10)
        deadline = killed_at + 240
        while (body := requests.get(other.url + path, timeout=10).json())["status"] in ("queued", "running"):
            assert time.time() < deadline, body
            time.sleep(0.5)
        took = time.time() - killed_at
        assert body["status"] == "done" and body["tiles_done"] == body["tiles_total"], body
        if hosts == "two containers":   # taken back by the lease, not by the same-host restart path
            assert took >= lease and worker.startswith(("container-a:", "container-b:")), (took, worker)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM prediction").fetchone()[0] == 1
            assert conn.execute("SELECT worker FROM job").fetchone()[0] != worker
        print(f"\nlease: the job of the killed front end finished on the other {took:.1f} s after the kill "
              f"(lease {lease:.0f} s)")
    finally:
        for s in servers:
            s.stop()
