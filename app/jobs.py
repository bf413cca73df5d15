"""Background jobs for large inputs: rows in the database, run by a thread pool in the serving process.

Why no external queue (Celery, RQ, Huey, Dramatiq): a job is a long forward pass of a model that
is loaded in this process, through its dynamic batcher, which interleaves the job's tiles with
interactive requests (priority :data:`JOB_PRIORITY`); a queue in another process would need a
broker or a second copy of the model, and the embedded default has no server besides gunicorn.
The standard library's ``concurrent.futures.ThreadPoolExecutor`` runs them (``JOB_CONCURRENCY``
at a time); the ``job`` table is the source of truth, so a page reload or another worker sees
the state, and a job cut off by a restart is marked ``failed`` with the reason when the server
next looks at its jobs.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from flask import Flask, current_app, request, url_for

from geovision.imaging import ImageError

from .errors import ApiError
from .extensions import db
from .records import Job
from .tasks.handler import TaskHandler
from .uploads import upload_root

log = logging.getLogger(__name__)
JOB_PRIORITY = 10                    #: batcher priority of job rows (interactive requests: 0)
ACTIVE = ("queued", "running")
WORKER = f"{socket.gethostname()}:{os.getpid()}"


class JobCancelled(Exception):
    """Raised inside a running job when it has been cancelled."""


class JobRunner:
    """Per-app pool of job threads, and the cancellation flags of the running jobs."""

    def __init__(self, app: Flask):
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=int(app.config.get("JOB_CONCURRENCY", 1)),
                                       thread_name_prefix="job")
        self.cancelled: set[str] = set()
        self.recovered = False
        self.lock = threading.Lock()

    def recover(self) -> None:
        """Mark the active jobs of processes that no longer exist as failed (once per process)."""
        with self.lock:
            if self.recovered:
                return
            self.recovered = True
        for job in db.session.scalars(db.select(Job).where(Job.status.in_(ACTIVE))):
            host, _, pid = job.worker.partition(":")
            if job.worker != WORKER and host == socket.gethostname() and not _alive(int(pid or 0)):
                _finish(job, "failed", "interrupted: the server restarted while the job was queued or running")
        db.session.commit()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def runner() -> JobRunner:
    jobs: JobRunner = current_app.extensions["jobs"]
    jobs.recover()
    return jobs


def _finish(job: Job, status: str, error: str | None = None) -> None:
    job.status, job.error, job.finished_at = status, error, datetime.now(UTC)


def create(handler: TaskHandler, item, options: dict, units: int) -> Job:
    """Queue a job for ``item`` (``units`` rows of work) and start it; raises ApiError 429 when the
    client has ``JOB_MAX_PER_CLIENT`` active jobs, 503 when ``JOB_MAX_ACTIVE`` are active in all."""
    jobs = runner()
    client = (request.remote_addr or "unknown")[:64]
    active = db.select(db.func.count()).select_from(Job).where(Job.status.in_(ACTIVE))
    if db.session.scalar(active.where(Job.client == client)) >= current_app.config["JOB_MAX_PER_CLIENT"]:
        raise ApiError("too_many_jobs", "you have the most jobs allowed running; wait for one to finish", 429,
                       headers={"Retry-After": "30"})
    if db.session.scalar(active) >= current_app.config["JOB_MAX_ACTIVE"]:
        raise ApiError("jobs_busy", "the server runs as many jobs as it can; retry later", 503,
                       headers={"Retry-After": "30"})
    job = Job(task=handler.name, client=client, filename=item.filename, tiles_total=units, worker=WORKER, inputs={})
    db.session.add(job)
    db.session.flush()
    folder = upload_root() / "jobs" / job.public_id
    folder.mkdir(parents=True, exist_ok=True)
    job.inputs = {"item": handler.job_input(item, folder), "options": handler.job_options(options),
                  "base_url": request.host_url}
    db.session.commit()
    jobs.pool.submit(_run, jobs.app, job.public_id)
    return job


def answer_or_queue(handler: TaskHandler, item, options: dict) -> dict:
    """The handler's answer now, or, for an input of more than ``SYNC_MAX_TILES`` rows, a new job
    (:func:`describe`: it has ``job_id``)."""
    if handler.supports_jobs:
        units = handler.job_units(item, **options)
        if units > current_app.config["SYNC_MAX_TILES"]:
            return describe(create(handler, item, options, units))
    return handler.answer(item, **options)


def cancel(job: Job) -> Job:
    """Cancel a queued or running job (a running one stops after its current chunk)."""
    if job.status in ACTIVE:
        current_app.extensions["jobs"].cancelled.add(job.public_id)
        _finish(job, "cancelled", "cancelled by the client")
        db.session.commit()
    return job


def describe(job: Job) -> dict:
    """The API body of a job: ``job_id``, ``status``, ``progress`` (0..1), ``tiles_done``,
    ``tiles_total``, ``eta_s`` (None when unknown), ``status_url``, ``error``, and when done the
    task's result fields."""
    progress = job.tiles_done / job.tiles_total if job.tiles_total else 0.0
    eta = None
    if job.status == "running" and job.started_at and job.tiles_done:
        elapsed = (datetime.now(UTC) - job.started_at.replace(tzinfo=job.started_at.tzinfo or UTC)).total_seconds()
        eta = round(elapsed / job.tiles_done * (job.tiles_total - job.tiles_done), 1)
    body = {"job_id": job.public_id, "task": job.task, "filename": job.filename, "status": job.status,
            "progress": round(1.0 if job.status == "done" else progress, 4), "tiles_done": job.tiles_done,
            "tiles_total": job.tiles_total, "eta_s": eta, "error": job.error,
            "status_url": url_for("api.job_status", task=job.task, job_id=job.public_id, _external=True)}
    if job.status == "done" and job.result:
        body.update({k: v for k, v in job.result.items() if k != "filename"})
    return body


def _run(app: Flask, job_id: str) -> None:
    """Run one job in a pool thread: mark it running, answer its item with progress, store the result."""
    with app.app_context():
        job = db.session.scalar(db.select(Job).where(Job.public_id == job_id))
        if job is None or job.status != "queued":
            return
        handler = app.extensions["tasks"][job.task]
        job.status, job.started_at = "running", datetime.now(UTC)
        db.session.commit()
        last_write = [0.0]

        def progress(done: int, total: int) -> None:
            if job_id in app.extensions["jobs"].cancelled:
                raise JobCancelled
            if time.monotonic() - last_write[0] > 0.5 or done == total:
                job.tiles_done, job.tiles_total = done, total
                db.session.commit()
                last_write[0] = time.monotonic()

        try:
            with app.test_request_context(base_url=job.inputs.get("base_url")):
                item = handler.job_item(job.inputs["item"])
                options = handler.job_options(job.inputs["options"], restore=True)
                job.result = handler.answer(item, progress=progress, priority=JOB_PRIORITY, **options)
            _finish(job, "done")
        except JobCancelled:
            db.session.rollback()
            job = db.session.scalar(db.select(Job).where(Job.public_id == job_id))
            _finish(job, "cancelled", "cancelled by the client")
        except ImageError as exc:
            db.session.rollback()
            _finish(job, "failed", f"{exc.code}: {exc}")
        except Exception as exc:  # noqa: BLE001 - recorded on the job, logged with its trace
            log.exception("job %s failed", job_id)
            db.session.rollback()
            _finish(job, "failed", f"{type(exc).__name__}: {exc}")
        db.session.commit()
        app.extensions["jobs"].cancelled.discard(job_id)


def init_app(app: Flask) -> None:
    app.extensions["jobs"] = JobRunner(app)
