"""Background jobs for large inputs: rows in the database, run by a thread pool in the serving process.

Why no external queue (Celery, RQ, Huey, Dramatiq): a job is a long forward pass of a model that
is loaded in this process, through its dynamic batcher, which interleaves the job's tiles with
interactive requests (priority :data:`app.job_state.JOB_PRIORITY`); a queue in another process would need a
broker or a second copy of the model, and the embedded default has no server besides gunicorn.
The standard library's ``concurrent.futures.ThreadPoolExecutor`` runs them (``JOB_CONCURRENCY``
at a time); the ``job`` table is the source of truth, so a page reload or another worker sees
the state, and a job cut off by a restart runs again from its kept input on the next start.
This module creates, limits, describes and cancels jobs; :mod:`app.jobrunner` runs them (through
:func:`app.serve.serve`, which also decides which items of a request become jobs).
"""
from __future__ import annotations

import logging
import shutil
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock
from flask import current_app, request, url_for

from geovision.imaging import ImageError

from .accounts import ANONYMOUS, current_account, current_owner_id
from .errors import ApiError, ErrorCode
from .extensions import db
from .job_state import ACTIVE, WORKER, claim, finish  # noqa: F401 (claim: part of the jobs API)
from .records import Job
from .storage import shared
from .tasks.handler import TaskHandler
from .uploads import upload_root

log = logging.getLogger(__name__)
JOB_LOCK_KEY = 0x6A6F6273   #: the advisory lock of job creation ("jobs")


def runner():
    """This app's :class:`app.jobrunner.JobRunner`, after it took back the jobs of a restart."""
    jobs = current_app.extensions["jobs"]
    jobs.recover()
    return jobs


def client_address() -> str:
    """The requester's address (the proxy's unless ``TRUSTED_PROXIES`` lets ProxyFix read X-Forwarded-For)."""
    return (request.remote_addr or "unknown")[:64]


def check_limits(new_jobs: int = 1) -> None:
    """Raise ApiError 429 (``too_many_jobs``) when the client's active jobs plus ``new_jobs`` would
    pass ``JOB_MAX_PER_CLIENT``, 503 (``jobs_busy``) when all active jobs would pass ``JOB_MAX_ACTIVE``.
    The client is the signed-in account (many users behind one proxy or NAT address count apart),
    else, for the ``anonymous`` demo user, the address."""
    account = current_account()
    active = db.select(db.func.count()).select_from(Job).where(Job.status.in_(ACTIVE))
    own = (Job.owner_id == account.id) if account is not None and account.name != ANONYMOUS \
        else (Job.client == client_address())
    if db.session.scalar(active.where(own)) + new_jobs > current_app.config["JOB_MAX_PER_CLIENT"]:
        raise ApiError(ErrorCode.TOO_MANY_JOBS, "you have the most jobs allowed running; wait for one to finish", 429,
                       headers={"Retry-After": "30"})
    if db.session.scalar(active) + new_jobs > current_app.config["JOB_MAX_ACTIVE"]:
        raise ApiError(ErrorCode.JOBS_BUSY, "the server runs as many jobs as it can; retry later", 503,
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


def _new_job(handler: TaskHandler, item, options: dict, units: int) -> Job:
    """Keep ``item``'s input and add its queued job row (not committed). An input refused here
    (ImageError) adds no row and leaves no folder."""
    public_id = uuid.uuid4().hex
    folder = upload_root() / "jobs" / public_id
    folder.mkdir(parents=True, exist_ok=True)
    try:
        inputs = {"item": handler.job_input(item, folder), "options": handler.job_options(options)}
    except ImageError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    shared().publish(folder)      # any front end may claim the job
    job = Job(public_id=public_id, task=handler.name, client=client_address(), owner_id=current_owner_id(),
              filename=item.filename, tiles_total=units, worker=WORKER, inputs=inputs)
    db.session.add(job)
    return job


def create(handler: TaskHandler, item, options: dict, units: int) -> Job:
    """Queue a job for ``item`` (``units`` rows of work) and start it; raises ApiError 429 when the
    client has ``JOB_MAX_PER_CLIENT`` active jobs, 503 when ``JOB_MAX_ACTIVE`` are active in all.
    The limits are counted and the row inserted under :func:`creation_lock`."""
    job = create_all(handler, [item], options, {id(item): units})[id(item)]
    if isinstance(job, ImageError):
        raise job
    return job


def create_all(handler: TaskHandler, items: list, options: dict, units: dict[int, int]) -> dict[int, Job | ImageError]:
    """Queue one job per item, all or none: the limits counted for all of them and every row
    inserted under one hold of :func:`creation_lock`, one commit (a refusal, 429 or 503, creates
    nothing, whatever other requests do meanwhile). An item whose input cannot be kept gets no job
    but its ImageError. Returns ``{id(item): job or ImageError}``."""
    jobs, made, folders = runner(), {}, []
    with creation_lock():
        check_limits(len(items))
        try:
            for item in items:
                try:
                    made[id(item)] = _new_job(handler, item, options, units[id(item)])
                except ImageError as exc:
                    made[id(item)] = exc
                    continue
                folders.append(upload_root() / "jobs" / made[id(item)].public_id)
            db.session.commit()
        except BaseException:
            db.session.rollback()
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
            raise
    for job in made.values():
        if isinstance(job, Job):
            jobs.submit(job.public_id)
    return made


def cancel(job: Job) -> Job:
    """Cancel a queued or running job (a running one stops after its current chunk)."""
    if job.status in ACTIVE:
        current_app.extensions["jobs"].cancelled.add(job.public_id)
        finish(job, "cancelled", "cancelled by the client")
        db.session.commit()
    return job


def describe(job: Job) -> dict:
    """The API body of a job: ``job_id``, ``status``, ``progress`` (0..1), ``tiles_done``,
    ``tiles_total``, ``unit`` (what they count: tiles, or lines of a volume), ``eta_s`` (None when
    unknown), ``status_url``, ``error``, and when done the task's result fields."""
    handler = current_app.extensions["tasks"][job.task]
    unit = handler.job_unit((job.inputs or {}).get("options") or {})
    progress = job.tiles_done / job.tiles_total if job.tiles_total else 0.0
    eta = None
    if job.status == "running" and job.started_at and job.tiles_done:
        elapsed = (datetime.now(UTC) - job.started_at.replace(tzinfo=job.started_at.tzinfo or UTC)).total_seconds()
        eta = round(elapsed / job.tiles_done * (job.tiles_total - job.tiles_done), 1)
    body = {"job_id": job.public_id, "task": job.task, "filename": job.filename, "status": job.status,
            "progress": round(1.0 if job.status == "done" else progress, 4), "tiles_done": job.tiles_done,
            "tiles_total": job.tiles_total, "unit": unit, "eta_s": eta, "error": job.error,
            "status_url": url_for("api.job_status", task=job.task, job_id=job.public_id, _external=True)}
    if job.status == "done" and job.result:
        body.update({k: v for k, v in handler.links(dict(job.result)).items() if k != "filename"})
    return body
