"""What the job modules share: the batcher priority of job rows, the active states, this process's
worker name, and the two state changes of a job row (claim, finish). :mod:`app.jobs` creates and
describes jobs, :mod:`app.jobrunner` runs them (through :func:`app.serve.serve`)."""
from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

from .extensions import db
from .records import Job

JOB_PRIORITY = 10                    #: batcher priority of job rows (interactive requests: 0)
ACTIVE = ("queued", "running")
#: The host name this process writes in its jobs' ``worker`` column (``JOB_WORKER_HOST``, default the
#: host name: a container's id). Front ends with different names treat each other as other hosts:
#: only the lease takes their jobs back.
HOST = os.environ.get("JOB_WORKER_HOST") or socket.gethostname()
WORKER = f"{HOST}:{os.getpid()}"


def finish(job: Job, status: str, error: str | None = None) -> None:
    """Set a job's final ``status`` (done, failed, cancelled), its ``error`` and ``finished_at``."""
    job.status, job.error, job.finished_at = status, error, datetime.now(UTC)


def claim(job_id: str) -> bool:
    """Take a queued job for this process: one atomic ``UPDATE ... WHERE status = 'queued'``, so of
    several front ends polling one database exactly one runs it. Returns whether this one won."""
    claimed = db.session.execute(
        db.update(Job).where(Job.public_id == job_id, Job.status == "queued")
        .values(status="running", worker=WORKER, started_at=datetime.now(UTC), heartbeat_at=datetime.now(UTC)))
    db.session.commit()
    return claimed.rowcount == 1
