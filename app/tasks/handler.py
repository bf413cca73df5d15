"""The task handler: the model pipeline of one task.

After TorchServe's handlers (``ts/torch_handler/base_handler.py``): :meth:`TaskHandler.preprocess`
turns one upload into model input rows, the engine runs the batched inference, and
:meth:`TaskHandler.postprocess` turns the output rows into an :class:`Outcome`. :meth:`TaskHandler.run`
chains them and is pure: it touches neither the database, the file store nor ``url_for``.
:mod:`app.recorder` writes an outcome's files and row (the one place that does), and
:meth:`TaskHandler.links` adds the result's URLs when it is sent to a client. Its ``api``
(:class:`~app.tasks.parts.TaskApi`: route, schema, errors, v2 tensors) and ``page``
(:class:`~app.tasks.parts.TaskPage`: menu, card, pages, history cell) are its collaborators, its
options a pydantic model (:mod:`app.tasks.options`); a task whose large inputs run as jobs also
implements :class:`~app.tasks.protocols.JobTask`, one with a gallery
:class:`~app.tasks.protocols.GalleryTask`. The menu, the home page, the history, the API and the
``flask gallery`` commands loop over the registered handlers (see :mod:`app.tasks`).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from flask import Flask, current_app
from werkzeug.datastructures import FileStorage, MultiDict

from geovision.checkpoint import Checkpoint
from geovision.imaging import ImageError

from ..extensions import engine
from ..outcome import Outcome
from ..uploads import read_uploads
from .options import TaskOptions
from .parts import TaskApi, TaskPage
from .protocols import GalleryTask, JobTask


@dataclass
class Prepared:
    """One upload after :meth:`TaskHandler.preprocess`.

    ``rows``: float32 tensor (n, *input_shape) for the engine, or None when the answer needs no
    forward pass; ``size``: (width, height) of the input in pixels, recorded; ``state``: whatever
    :meth:`TaskHandler.postprocess` needs (the decoded image, tile origins, ...).
    """

    rows: torch.Tensor | None
    size: tuple[int, int]
    state: dict[str, Any] = field(default_factory=dict)


class TaskHandler:
    """The model pipeline of one task; subclasses set the class attributes and override the hooks.

    Its collaborators: ``api`` (:class:`~app.tasks.parts.TaskApi`, how programs call it) and
    ``page`` (:class:`~app.tasks.parts.TaskPage`, what people see of it).
    """

    #: Task name: the ``models/<name>/`` folder, the API path segment and the database ``task``.
    name: ClassVar[str] = ""
    #: Checkpoint task the handler runs (default: ``name``; similarity search runs ``similarity``).
    model: ClassVar[str | None] = None
    api: ClassVar[TaskApi] = TaskApi()
    page: ClassVar[TaskPage] = TaskPage()
    #: Configuration keys of the task and their defaults (``app.config.setdefault``).
    config_defaults: ClassVar[dict[str, Any]] = {}
    #: The task's typed options (:mod:`app.tasks.options`): :meth:`parse_options`, the OpenAPI fields
    #: and the pages' validation come from it; its fields are the hooks' keyword options.
    options_model: ClassVar[type[TaskOptions]] = TaskOptions
    #: Tasks this one composes with (the rocks page searches the similarity gallery with its own
    #: forward pass's embedding): checked when the tasks are registered, reached by :meth:`dependency`.
    uses: ClassVar[tuple[str, ...]] = ()

    # --- registration -----------------------------------------------------------------------
    @property
    def supports_jobs(self) -> bool:
        """Large inputs run as background jobs (the task implements :class:`~app.tasks.protocols.JobTask`)."""
        return isinstance(self, JobTask)

    @property
    def has_gallery(self) -> bool:
        """The task keeps a gallery (it implements :class:`~app.tasks.protocols.GalleryTask`)."""
        return isinstance(self, GalleryTask)

    @property
    def model_task(self) -> str:
        return self.model or self.name

    def dependency(self, name: str) -> TaskHandler:
        """The current app's handler of task ``name``, which this task declares in :attr:`uses`
        (LookupError for an undeclared one: tasks meet through declared dependencies only)."""
        if name not in self.uses:
            raise LookupError(f"task {self.name!r} does not declare {name!r} in its uses")
        return current_app.extensions["tasks"][name]

    def init_app(self, app: Flask) -> None:
        """Set the configuration defaults; subclasses add CLI commands here."""
        for key, value in self.config_defaults.items():
            app.config.setdefault(key, value)

    def request_limit(self, config: dict) -> int | None:
        """Largest request body of this task's upload page and API route in bytes, when it
        differs from ``MAX_CONTENT_LENGTH`` (None: the app's limit)."""
        return None

    # --- request parsing --------------------------------------------------------------------
    def parse_options(self, form: MultiDict) -> dict[str, Any]:
        """Keyword options of the hooks from the request's form fields (:attr:`options_model`).

        Raises :class:`app.tasks.options.OptionError` (an ApiError, 400, ``invalid_<field>``)."""
        return self.options_model.parse(form).hooks()

    def read_inputs(self, files: list[FileStorage], form: MultiDict | None = None) -> list[Any]:
        """The items of a request's ``image`` files (each has ``filename`` and ``sha256``); ``form``
        may name inputs kept on the server (salt: ``segy_id``)."""
        return read_uploads(files)

    def check_model(self) -> None:
        """Raise ModelNotReady (503) when the task's model is not loaded."""
        engine.checkpoint(self.model_task)

    def check_ready(self) -> None:
        """Raise before any upload is decoded when the task cannot answer (ModelNotReady, 503;
        GalleryUnavailable, 409 for a task whose gallery is missing)."""
        self.check_model()

    # --- the pipeline -------------------------------------------------------------------------
    def preprocess(self, item: Any, ckpt: Checkpoint, **options) -> Prepared:
        """Decode and prepare one item; raises :class:`geovision.imaging.ImageError` for bad input."""
        raise NotImplementedError

    def postprocess(self, prepared: Prepared, outputs: torch.Tensor | None, ckpt: Checkpoint,
                    **options) -> Outcome:
        """The :class:`Outcome` of one item (``result``, ``summary``, ``artefacts``) from the model's
        output rows (float32 (n, ...) on CPU, aligned with ``prepared.rows``); writes nothing."""
        raise NotImplementedError

    def run(self, item: Any, progress: Callable[[int, int], None] | None = None, priority: int = 0,
            **options) -> Outcome:
        """:meth:`run_many` of one item, raising its ImageError (a bad upload).

        ``progress(rows_done, rows_total)`` is called after each chunk of ``JOB_CHUNK_ROWS`` rows
        when given (background jobs; it may raise to stop the work); ``priority`` orders the rows
        in the batcher (0 interactive, larger for background work). Raises ImageError for a bad
        upload, and the engine's ModelNotReady, QueueFullError and TimeoutError.
        """
        (answer,) = self.run_many([item], priority, progress, **options)
        if isinstance(answer, ImageError):
            raise answer
        return answer

    def run_many(self, items: list, priority: int = 0, progress: Callable[[int, int], None] | None = None,
                 **options) -> list[Outcome | ImageError]:
        """The batch path, pure (nothing is written; :mod:`app.recorder` does that): every item
        preprocessed, the rows of all of them sent to the batcher in one call
        (:meth:`outputs_for_many`, split back by offsets), each postprocessed into an :class:`Outcome`.

        Returns one entry per item, in order: its Outcome, or the ImageError that refused it (a bad
        upload costs no forward pass and fails nothing else). ``timings``: ``decode_ms`` the item's
        own preprocessing, ``inference_ms`` the shared forward pass plus its own postprocessing.
        Raises the engine's ModelNotReady, QueueFullError and TimeoutError.
        """
        ckpt = engine.checkpoint(self.model_task)
        prepared: list[Prepared | ImageError] = []
        decode_ms: list[float] = []
        for item in items:
            started = time.perf_counter()
            try:
                prepared.append(self.preprocess(item, ckpt, **options))
            except ImageError as exc:
                prepared.append(exc)
            decode_ms.append((time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        outputs = iter(self.outputs_for_many([p for p in prepared if isinstance(p, Prepared)], priority, progress))
        infer_ms = (time.perf_counter() - started) * 1e3
        answers: list[Outcome | ImageError] = []
        for item, ready, decoded in zip(items, prepared, decode_ms):
            if isinstance(ready, ImageError):
                answers.append(ready)
                continue
            started = time.perf_counter()
            try:
                outcome = self.postprocess(ready, next(outputs), ckpt, **options)
            except ImageError as exc:
                answers.append(exc)
                continue
            inference = infer_ms + (time.perf_counter() - started) * 1e3
            outcome.task, outcome.filename, outcome.sha256 = self.name, item.filename, item.sha256
            outcome.size, outcome.model_name, outcome.model_version = ready.size, ckpt.name, ckpt.version
            outcome.timings = {"decode_ms": decoded, "inference_ms": inference, "total_ms": decoded + inference}
            answers.append(outcome)
        return answers

    def links(self, answer: dict) -> dict:
        """``answer`` (``{"filename", **result, "prediction_id"}``) with the URLs a client follows
        (salt ``mask_url``; similarity ``image_url``; ...), built in a request; default: unchanged."""
        return answer

    def outputs_for_many(self, prepared: list[Prepared], priority: int = 0,
                         progress: Callable[[int, int], None] | None = None) -> list[torch.Tensor | None]:
        """The model's outputs of each prepared item (default: :meth:`infer_many` of their rows; salt
        reuses the outputs of an input it answered moments ago when the user edits with clicks)."""
        return self.infer_many([p.rows for p in prepared], priority, progress)

    def infer_many(self, rows: list[torch.Tensor | None], priority: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> list[torch.Tensor | None]:
        """:meth:`infer` of several items' rows in one call (one trip to the batcher: the rows fill
        its batches together), the outputs split back by the items' row counts; None stays None."""
        present = [r for r in rows if r is not None]
        if not present:
            return [None] * len(rows)
        joined = present[0] if len(present) == 1 else torch.cat(present)
        parts = iter(torch.split(self.infer(joined, priority, progress), [len(r) for r in present]))
        return [None if r is None else next(parts) for r in rows]

    def infer(self, rows: torch.Tensor | None, priority: int = 0,
              progress: Callable[[int, int], None] | None = None) -> torch.Tensor | None:
        """The model's output rows for ``rows`` (None: no forward pass); with ``progress``, in chunks of
        ``JOB_CHUNK_ROWS`` submitted one after the other, reporting after each."""
        if rows is None:
            return None
        if progress is None:
            return engine.predict(self.model_task, rows, priority)
        # background work goes in small chunks: an interactive request waits for one chunk at most
        step = max(1, min(engine.state.max_batch_size, int(current_app.config.get("JOB_CHUNK_ROWS", 8))))
        outputs = []
        for start in range(0, len(rows), step):
            outputs.append(engine.predict(self.model_task, rows[start:start + step], priority))
            progress(min(start + step, len(rows)), len(rows))
        return torch.cat(outputs)
