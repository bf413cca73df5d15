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
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock
from flask import Flask, current_app, request, url_for

from geovision.imaging import ImageError

from .errors import ApiError
from .extensions import db
from .records import Job
from .storage import shared
from .tasks.handler import TaskHandler
from .uploads import answer_each, upload_root

log = logging.getLogger(__name__)
JOB_PRIORITY = 10                    #: batcher priority of job rows (interactive requests: 0)
ACTIVE = ("queued", "running")
JOB_LOCK_KEY = 0x6A6F6273   #: the advisory lock of job creation ("jobs")
WORKER = f"{socket.gethostname()}:{os.getpid()}"


class JobCancelled(Exception):
    """Raised inside a running job when it has been cancelled."""


class JobRunner:
    """Per-app pool of job threads, and the cancellation flags of the running jobs."""

    def __init__(self, app: Flask):
        self.app = app
        self.concurrency = int(app.config.get("JOB_CONCURRENCY", 1))
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="job")
        self.cancelled: set[str] = set()
        self.submitted: set[str] = set()     #: job ids handed to this pool and not finished
        self.recovered = False
        self.lock = threading.Lock()
        self.poller: threading.Thread | None = None

    def start_polling(self) -> None:
        """Start the ``JOB_POLL_S`` poller once per process (on its first request: after the fork,
        and never in CLI commands that run before the database is migrated)."""
        poll_s = float(self.app.config.get("JOB_POLL_S", 0) or 0)
        if poll_s <= 0 or self.poller is not None:
            return
        with self.lock:
            if self.poller is None:
                self.poller = threading.Thread(target=self._poll, args=(poll_s,), name="job-claim", daemon=True)
                self.poller.start()

    def submit(self, job_id: str) -> None:
        """Hand ``job_id`` to this process's pool (it runs if this process wins :func:`claim`)."""
        with self.lock:
            if job_id in self.submitted:
                return
            self.submitted.add(job_id)
        self.pool.submit(_run, self.app, job_id)

    def claim_queued(self) -> int:
        """Submit the oldest queued jobs (any front end's) that fit this pool's free slots; returns
        how many were submitted. Called every ``JOB_POLL_S`` seconds when that is set."""
        free = self.concurrency - len(self.submitted)
        if free <= 0:
            return 0
        with self.app.app_context():
            ids = db.session.scalars(db.select(Job.public_id).where(Job.status == "queued")
                                     .order_by(Job.created_at).limit(free)).all()
        for job_id in ids:
            self.submit(job_id)
        return len(ids)

    def _poll(self, every_s: float) -> None:
        while True:
            time.sleep(every_s)
            try:
                self.claim_queued()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the poller
                log.exception("claiming queued jobs failed")

    def recover(self) -> None:
        """Take back the active jobs of processes of this host that no longer exist (once per
        process): a job whose input is still kept goes back to the queue and runs again from its
        start (once the models are loaded: :func:`_run_claimed` waits for them); one without its
        input is marked failed."""
        with self.lock:
            if self.recovered:
                return
            self.recovered = True
        requeued = []
        for job in db.session.scalars(db.select(Job).where(Job.status.in_(ACTIVE))):
            host, _, pid = job.worker.partition(":")
            if job.worker != WORKER and host == socket.gethostname() and not _alive(int(pid or 0)):
                if (job.inputs or {}).get("item") and (upload_root() / "jobs" / job.public_id).is_dir():
                    job.status, job.worker, job.tiles_done, job.started_at = "queued", WORKER, 0, None
                    requeued.append(job.public_id)
                    log.info("job %s queued again after a restart (it runs from the start)", job.public_id)
                else:
                    _finish(job, "failed", "interrupted: the server restarted and the job's input is gone")
        db.session.commit()
        for job_id in requeued:
            self.submit(job_id)


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


def check_limits(new_jobs: int = 1) -> None:
    """Raise ApiError 429 (``too_many_jobs``) when the client's active jobs plus ``new_jobs`` would
    pass ``JOB_MAX_PER_CLIENT``, 503 (``jobs_busy``) when all active jobs would pass ``JOB_MAX_ACTIVE``."""
    client = (request.remote_addr or "unknown")[:64]
    active = db.select(db.func.count()).select_from(Job).where(Job.status.in_(ACTIVE))
    if db.session.scalar(active.where(Job.client == client)) + new_jobs > current_app.config["JOB_MAX_PER_CLIENT"]:
        raise ApiError("too_many_jobs", "you have the most jobs allowed running; wait for one to finish", 429,
                       headers={"Retry-After": "30"})
    if db.session.scalar(active) + new_jobs > current_app.config["JOB_MAX_ACTIVE"]:
        raise ApiError("jobs_busy", "the server runs as many jobs as it can; retry later", 503,
                       headers={"Retry-After": "30"})


@contextmanager
def creation_lock():
    """Count and insert jobs one request at a time, across threads and processes: a PostgreSQL
    transaction-level advisory lock (released by the commit), else a file lock beside the SQLite
    database (one host). Without it, 30 concurrent submits from one address got 4 jobs past a
    limit of 2."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(db.text("SELECT pg_advisory_xact_lock(:key)"), {"key": JOB_LOCK_KEY})
        yield
        return
    Path(current_app.instance_path).mkdir(parents=True, exist_ok=True)
    with FileLock(str(Path(current_app.instance_path) / "jobs.lock"), timeout=30):
        yield


def create(handler: TaskHandler, item, options: dict, units: int) -> Job:
    """Queue a job for ``item`` (``units`` rows of work) and start it; raises ApiError 429 when the
    client has ``JOB_MAX_PER_CLIENT`` active jobs, 503 when ``JOB_MAX_ACTIVE`` are active in all.
    The limits are counted and the row inserted under :func:`creation_lock`."""
    jobs = runner()
    client = (request.remote_addr or "unknown")[:64]
    with creation_lock():
        check_limits()
        job = Job(task=handler.name, client=client, filename=item.filename, tiles_total=units, worker=WORKER,
                  inputs={})
        db.session.add(job)
        db.session.flush()
        folder = upload_root() / "jobs" / job.public_id
        folder.mkdir(parents=True, exist_ok=True)
        job.inputs = {"item": handler.job_input(item, folder), "options": handler.job_options(options),
                      "base_url": request.host_url}
        shared().publish(folder)      # any front end may claim the job
        db.session.commit()
    jobs.submit(job.public_id)
    return job


def answer_all(handler: TaskHandler, items: list, options: dict) -> tuple[list[dict], int]:
    """:func:`answer_or_queue` for every item of one request, with the job limits checked for all
    the jobs it would create before any is created (a refusal creates nothing). An item that cannot
    be sized is answered (and refused) on its own. Returns :func:`app.uploads.answer_each`'s pair."""
    if handler.supports_jobs:
        jobs_needed = 0
        for item in items:
            try:
                jobs_needed += handler.job_units(item, **options) > current_app.config["SYNC_MAX_TILES"]
            except ImageError:
                continue
        if jobs_needed:
            check_limits(jobs_needed)
    return answer_each(items, lambda item: answer_or_queue(handler, item, options))


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
    """Run one job in a pool thread if this process claims it (:func:`claim`)."""
    with app.app_context():
        try:
            if claim(job_id):
                _run_claimed(app, job_id)
        finally:
            app.extensions["jobs"].submitted.discard(job_id)
            app.extensions["jobs"].cancelled.discard(job_id)


def claim(job_id: str) -> bool:
    """Take a queued job for this process: one atomic ``UPDATE ... WHERE status = 'queued'``, so of
    several front ends polling one database exactly one runs it. Returns whether this one won."""
    claimed = db.session.execute(
        db.update(Job).where(Job.public_id == job_id, Job.status == "queued")
        .values(status="running", worker=WORKER, started_at=datetime.now(UTC)))
    db.session.commit()
    return claimed.rowcount == 1


def _run_claimed(app: Flask, job_id: str) -> None:
    """Answer a claimed job's item with progress and store the result (or the reason it failed).
    Waits for the models first: a job picked up while the server starts runs once they are loaded."""
    app.extensions["engine"].wait_loaded()
    job = db.session.scalar(db.select(Job).where(Job.public_id == job_id))
    handler = app.extensions["tasks"][job.task]
    shared().fetch(upload_root() / "jobs" / job_id, folder=True)   # its input, if another front end took it
    last_write = [0.0]

    def progress(done: int, total: int) -> None:
        if job_id in app.extensions["jobs"].cancelled:
            raise JobCancelled
        if time.monotonic() - last_write[0] > 0.5 or done == total:
            job.tiles_done, job.tiles_total = done, total
            db.session.commit()
            last_write[0] = time.monotonic()
            status = db.session.scalar(db.select(Job.status).where(Job.public_id == job_id))
            if status == "cancelled":    # cancelled through another front end
                raise JobCancelled

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


def init_app(app: Flask) -> None:
    app.extensions["jobs"] = jobs = JobRunner(app)
    app.before_request(jobs.start_polling)
