"""Database records: one row per answered file, one per background job, each with its owner (app.accounts)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db


def _now() -> datetime:
    return datetime.now(UTC)


class Prediction(db.Model):
    """An answered file: task, input hash, model, result summary and timings."""

    __tablename__ = "prediction"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, index=True,
                                           default=lambda: uuid.uuid4().hex)
    task: Mapped[str] = mapped_column(String(32), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    input_sha256: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict] = mapped_column(JSON)
    decode_ms: Mapped[float] = mapped_column(Float)
    inference_ms: Mapped[float] = mapped_column(Float)
    total_ms: Mapped[float] = mapped_column(Float)
    #: the account that asked (app.accounts; ``anonymous`` without sign-in): only it and admins see the row
    owner_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)

    def __repr__(self) -> str:
        return f"<Prediction {self.task} {self.public_id}>"


class Job(db.Model):
    """A background job (a large salt input): its state, progress and, when done, its result."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, index=True, default=lambda: uuid.uuid4().hex)
    task: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")  #: queued|running|done|failed|cancelled
    client: Mapped[str] = mapped_column(String(64), index=True)     #: the client address (the per-client limit)
    owner_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)   #: the account that asked
    filename: Mapped[str] = mapped_column(String(255))
    inputs: Mapped[dict] = mapped_column(JSON)                      #: where the input is kept and the options
    tiles_done: Mapped[int] = mapped_column(Integer, default=0)
    tiles_total: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str] = mapped_column(String(64), default="")     #: host:pid of the process running it
    #: renewed by the worker running the job every JOB_HEARTBEAT_S; older than JOB_LEASE_S: taken back
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def __repr__(self) -> str:
        return f"<Job {self.task} {self.public_id} {self.status}>"


class WhaleDecision(db.Model):
    """An admin's verdict on a whale answer: the query photo belongs to a known individual
    (``confirm``) or to a new one (``new``, with the id created for it); the photo is enrolled."""

    __tablename__ = "whale_decision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[str] = mapped_column(String(32), index=True)   #: the answer's public id
    action: Mapped[str] = mapped_column(String(16))                      #: confirm | new
    whale_id: Mapped[str] = mapped_column(String(64), index=True)
    decided_by: Mapped[str] = mapped_column(String(64))                  #: the name the admin gave
    client: Mapped[str] = mapped_column(String(64))                      #: the request's address
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)

    def __repr__(self) -> str:
        return f"<WhaleDecision {self.action} {self.whale_id} for {self.prediction_id}>"


class SaltCorrection(db.Model):
    """A salt mask fixed with clicks and saved by its owner as training data: the refined answer
    (``prediction_id``; its stored ``input.png`` and ``mask.png`` are the image and the corrected mask),
    the answer it started from, the clicks ``[{"x", "y", "salt"}]``. Owners see their own, admins all."""

    __tablename__ = "salt_correction"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    source_id: Mapped[str] = mapped_column(String(32), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    clicks: Mapped[list] = mapped_column(JSON)
    owner_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)

    def __repr__(self) -> str:
        return f"<SaltCorrection {self.prediction_id} ({len(self.clicks)} clicks)>"
