"""Running background jobs: the per-process pool, claiming a queued job, running it with progress,
cancelling, stopping at shutdown and taking back the jobs of a restarted or vanished server.

A running job is held by a lease, as Celery's visibility timeout and RQ's abandoned-job handling
do: its worker renews ``job.heartbeat_at`` every ``JOB_HEARTBEAT_S``; any front end (any host)
takes back a job whose heartbeat is older than ``JOB_LEASE_S`` (its process was killed, its
container replaced) and queues it again, from its start; a worker that finds its job taken back
stops without recording it, so no job is completed twice.

Jobs are created, limited and described by :mod:`app.jobs`; this module only runs them.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from flask import Flask

from geovision.imaging import ImageError

from .extensions import db
from .job_state import ACTIVE, HOST, JOB_PRIORITY, WORKER, claim, finish
from .recorder import record
from .records import Job
from .serve import Refused, serve
from .storage import shared
from .uploads import upload_root

log = logging.getLogger(__name__)

class JobCancelled(Exception):
    """Raised inside a running job when it has been cancelled."""


class JobInterrupted(Exception):
    """Raised inside a running job when the server shuts down (:meth:`JobRunner.stop`)."""


class JobLost(Exception):
    """Raised inside a running job whose lease another front end took back (it runs it again)."""


class JobRunner:
    """Per-app pool of job threads, and the cancellation flags of the running jobs."""

    def __init__(self, app: Flask):
        self.app = app
        self.concurrency = int(app.config.get("JOB_CONCURRENCY", 1))
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="job")
        self.cancelled: set[str] = set()
        self.submitted: set[str] = set()     #: job ids handed to this pool and not finished
        self.running: set[str] = set()       #: job ids this process claimed and runs (their leases renewed)
        self.recovered = False
        self.stopping = False
        self.lock = threading.Lock()
        self.poller: threading.Thread | None = None

    def start_polling(self) -> None:
        """Start the ``JOB_POLL_S`` poller once per process (on its first request: after the fork,
        and never in CLI commands that run before the database is migrated)."""
        if not self.recovered:
            self.recover()      # jobs cut off by a restart run again without waiting for a job request
        poll_s = float(self.app.config.get("JOB_POLL_S", 0) or 0)
        if poll_s <= 0 or self.poller is not None:
            return
        with self.lock:
            if self.poller is None:
                self.poller = threading.Thread(target=self._poll, args=(poll_s,), name="job-claim", daemon=True)
                self.poller.start()
                beat = float(self.app.config.get("JOB_HEARTBEAT_S", 10))
                threading.Thread(target=self._beat, args=(beat,), name="job-lease", daemon=True).start()

    def stop(self) -> None:
        """Shutting down: running jobs stop after their current chunk and go back to the queue
        (the next start runs them again, :meth:`recover`); queued ones are not started here."""
        self.stopping = True
        self.pool.shutdown(wait=False, cancel_futures=True)

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
                self.take_back_expired()
                self.claim_queued()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the poller
                log.exception("claiming queued jobs failed")

    def _beat(self, every_s: float) -> None:
        while not self.stopping:
            time.sleep(every_s)
            try:
                self.renew_leases()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the heartbeat
                log.exception("renewing job leases failed")

    def renew_leases(self) -> int:
        """Set ``heartbeat_at`` of the jobs this process runs (and still holds); returns how many."""
        ids = list(self.running)
        if not ids:
            return 0
        with self.app.app_context():
            done = db.session.execute(db.update(Job).where(Job.public_id.in_(ids), Job.worker == WORKER,
                                                           Job.status == "running").values(heartbeat_at=datetime.now(UTC)))
            db.session.commit()
        return done.rowcount

    def take_back_expired(self) -> list[str]:
        """Queue again every running job (of any host) whose lease expired: no heartbeat for
        ``JOB_LEASE_S`` seconds. One compare-and-set ``UPDATE`` per job, so of several front ends
        exactly one takes it back; a job whose input is gone is marked failed. Returns the ids queued."""
        lease = float(self.app.config.get("JOB_LEASE_S", 60))
        now, taken = datetime.now(UTC), []
        with self.app.app_context():
            for job in db.session.scalars(db.select(Job).where(Job.status == "running")).all():
                beat = job.heartbeat_at or job.started_at
                if beat is None or (now - (beat if beat.tzinfo else beat.replace(tzinfo=UTC))).total_seconds() <= lease:
                    continue
                if not (job.inputs or {}).get("item"):
                    finish(job, "failed", f"interrupted: its worker {job.worker} stopped and its input is gone")
                    db.session.commit()
                    continue
                moved = db.session.execute(
                    db.update(Job).where(Job.public_id == job.public_id, Job.status == "running", Job.worker == job.worker)
                    .values(status="queued", worker="", tiles_done=0, started_at=None, heartbeat_at=None))
                db.session.commit()
                if moved.rowcount == 1:
                    log.warning("job %s: the lease of %s expired; queued again", job.public_id, job.worker)
                    taken.append(job.public_id)
        return taken

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
            if job.worker != WORKER and host == HOST and not _alive(int(pid or 0)):
                if (job.inputs or {}).get("item") and (upload_root() / "jobs" / job.public_id).is_dir():
                    job.status, job.worker, job.tiles_done, job.started_at = "queued", WORKER, 0, None
                    requeued.append(job.public_id)
                    log.info("job %s queued again after a restart (it runs from the start)", job.public_id)
                else:
                    finish(job, "failed", "interrupted: the server restarted and the job's input is gone")
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


def _run(app: Flask, job_id: str) -> None:
    """Run one job in a pool thread if this process claims it (:func:`claim`)."""
    runner = app.extensions["jobs"]
    with app.app_context():
        try:
            if claim(job_id):
                runner.running.add(job_id)
                _run_claimed(app, job_id)
        finally:
            runner.running.discard(job_id)
            runner.submitted.discard(job_id)
            runner.cancelled.discard(job_id)


def _check_held(job_id: str) -> None:
    """Raise JobCancelled when the job was cancelled (through any front end), JobLost when this
    process no longer holds it (its lease expired and another front end took it back)."""
    status, worker = db.session.execute(db.select(Job.status, Job.worker).where(Job.public_id == job_id)).one()
    if status == "cancelled":
        raise JobCancelled
    if status != "running" or worker != WORKER:
        raise JobLost


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
        if app.extensions["jobs"].stopping:
            raise JobInterrupted
        if time.monotonic() - last_write[0] > 0.5 or done == total:
            job.tiles_done, job.tiles_total = done, total
            db.session.commit()
            last_write[0] = time.monotonic()
            _check_held(job_id)

    try:
        item = handler.job_item(job.inputs["item"])
        options = handler.job_options(job.inputs["options"], restore=True)
        (answer,) = serve(handler, [item], options, queue=False, record=False, priority=JOB_PRIORITY,
                          progress=progress)
        _check_held(job_id)
        if isinstance(answer, Refused):
            finish(job, "failed", f"{answer.code}: {answer.message}")
        else:
            (job.result,) = record([answer.outcome], job.owner_id, commit=False)   # committed below with the job's state
            finish(job, "done")
    except JobCancelled:
        db.session.rollback()
        job = db.session.scalar(db.select(Job).where(Job.public_id == job_id))
        finish(job, "cancelled", "cancelled by the client")
    except JobInterrupted:      # the server is stopping: back to the queue, run again on the next start
        db.session.rollback()
        job = db.session.scalar(db.select(Job).where(Job.public_id == job_id))
        job.status, job.tiles_done, job.started_at = "queued", 0, None
        log.info("job %s stopped by the shutdown; queued again", job_id)
    except JobLost:             # another front end took it back (this one was thought dead): it runs it
        db.session.rollback()
        log.warning("job %s: its lease was taken back; stopped here", job_id)
        return
    except ImageError as exc:
        db.session.rollback()
        finish(job, "failed", f"{exc.code}: {exc}")
    except Exception as exc:  # noqa: BLE001 - recorded on the job, logged with its trace
        log.exception("job %s failed", job_id)
        db.session.rollback()
        finish(job, "failed", f"{type(exc).__name__}: {exc}")
    db.session.commit()


def init_app(app: Flask) -> None:
    """The app's :class:`JobRunner` (``app.extensions["jobs"]``), its poller started by the first request."""
    app.extensions["jobs"] = jobs = JobRunner(app)
    app.before_request(jobs.start_polling)
