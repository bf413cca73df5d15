"""One path from parsed inputs to typed results, shared by every entry point.

:func:`serve` takes a handler, the items of one request (uploads, stored SEG-Y volumes) and its
parsed options, and answers each item with one of three types:

- :class:`Answered`: the pure pipeline's :class:`~app.outcome.Outcome` (all answered items of the
  request go through :meth:`~app.tasks.handler.TaskHandler.run_many`: one trip to the batcher),
  and once :func:`keep` has recorded it, its public ``body`` with the handler's links;
- :class:`Queued`: a background job (the input is over ``SYNC_MAX_TILES`` or the options ask for one);
- :class:`Refused`: an item that cannot be answered (its error code, message and HTTP status).

Entry points (docs/ARCHITECTURE.md, "Request flow"):

    v1    api.task_api          parse_options -> read_inputs -> serve -> JSON
    v2    v2.infer              parse_options -> serve(queue=False, record=False) -> tensors -> keep
    pages task_pages / salt, rocks, whales views: form -> serve -> template
    job   jobrunner             job_item -> serve(queue=False, record=False, progress) -> recorder.record
    CLI   flask predict         read_salt_files -> serve(queue=False, record=False) per --batch-size files

Only :mod:`app.recorder` writes (files, rows, the shared store); this module decides and types.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app

from geovision.imaging import ImageError

from . import jobs
from .accounts import current_owner_id
from .outcome import Outcome
from .recorder import record
from .records import Job
from .tasks.handler import TaskHandler


@dataclass
class Answered:
    """An item answered now: its outcome and, once kept (:func:`keep`), its public body
    ``{"filename", **result, "prediction_id", URLs}``."""

    outcome: Outcome
    body: dict | None = None


@dataclass
class Queued:
    """An item that became a background job."""

    job: Job

    @property
    def body(self) -> dict:
        return jobs.describe(self.job)


@dataclass
class Refused:
    """An item that cannot be answered: ``code`` (one of :data:`app.errors.ERROR_CODES`), a message
    for people, and the HTTP status it would get alone (400, 413, ...)."""

    filename: str
    code: str
    message: str
    status: int = 400

    @classmethod
    def of(cls, item: Any, exc: ImageError) -> Refused:
        return cls(getattr(item, "filename", "") or "", exc.code, str(exc), exc.status)

    @property
    def body(self) -> dict:
        return {"filename": self.filename, "error": {"code": self.code, "message": self.message}}


Result = Answered | Queued | Refused


def serve(handler: TaskHandler, items: list, options: dict, *, queue: bool = True, record: bool = True,
          priority: int = 0, progress: Callable[[int, int], None] | None = None,
          then: Callable[[Any, Outcome], Outcome] | None = None) -> list[Result]:
    """Answer ``items`` with ``options`` (the handler's parsed options): one result per item, in order.

    ``queue``: items over ``SYNC_MAX_TILES`` work units (or options that always need one, a salt
    volume) become jobs, all or none (:func:`app.jobs.create_all`: 429/503 refusals create
    nothing); off for the v2 protocol, the CLI and a job itself. The other items are answered
    together by :meth:`~app.tasks.handler.TaskHandler.run_many` (``priority``, ``progress`` as there);
    ``then(item, outcome)`` may complete each outcome (a page's extra fields). ``record``: keep the
    answers (:func:`keep`, one commit) so each :class:`Answered` has its ``body``.
    Raises what the engine raises (ModelNotReady, QueueFullError, TimeoutError) and ApiError for
    job limits; nothing of the request is recorded then.
    """
    results: list[Result | None] = [None] * len(items)
    if queue and handler.supports_jobs:
        units: dict[int, int] = {}
        for i, item in enumerate(items):
            try:
                units[i] = handler.job_units(item, **options)
            except ImageError as exc:
                results[i] = Refused.of(item, exc)
        limit = current_app.config["SYNC_MAX_TILES"]
        big = [i for i in units if units[i] > limit or handler.needs_job(**options)]
        if big:
            made = jobs.create_all(handler, [items[i] for i in big], options, {id(items[i]): units[i] for i in big})
            for i in big:
                job = made[id(items[i])]
                results[i] = Refused.of(items[i], job) if isinstance(job, ImageError) else Queued(job)
    now = [i for i, r in enumerate(results) if r is None]
    answers = handler.run_many([items[i] for i in now], priority, progress, **options) if now else []
    for i, answer in zip(now, answers):
        if isinstance(answer, ImageError):
            results[i] = Refused.of(items[i], answer)
        else:
            results[i] = Answered(then(items[i], answer) if then is not None else answer)
    if record:
        keep(handler, results)
    return results


def keep(handler: TaskHandler, results: list[Result], owner_id: int | None = None) -> list[Result]:
    """Record the :class:`Answered` results together (:func:`app.recorder.record`, one commit) for
    ``owner_id`` (default: the requester) and give each its public ``body`` with the handler's links."""
    answered = [r for r in results if isinstance(r, Answered)]
    if answered:
        bodies = record([r.outcome for r in answered], current_owner_id() if owner_id is None else owner_id)
        for r, body in zip(answered, bodies):
            r.body = handler.links(body)
    return results


def bodies(results: list[Result]) -> list[dict]:
    """The public JSON entries of ``results`` (answers, job bodies, ``{"filename", "error"}``)."""
    return [r.body for r in results]


def answered_any(results: list[Result]) -> bool:
    """Whether any item was answered or queued (a request of only refusals is an error)."""
    return any(not isinstance(r, Refused) for r in results)
