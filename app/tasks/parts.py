"""The two collaborators of a task handler that are not its model pipeline.

A :class:`~app.tasks.handler.TaskHandler` owns the pipeline (parse the request, preprocess,
infer, postprocess, links; jobs and gallery hooks). Beside it:

- :class:`TaskApi`, how programs call the task: the v1 route's action, its form fields, the
  result's JSON schema and error codes (the OpenAPI document is generated from them) and the
  Open Inference Protocol outputs, with :meth:`TaskApi.v2_outputs` turning answers into tensors;
- :class:`TaskPage`, what people see of it: the menu entry and home card, its own pages (a
  blueprint) or the generic page, the template of one result, and its history cell and link.

A task subclasses either when it has something to add; the defaults describe a task with no
options, the generic page and no history link.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, url_for


class TaskApi:
    """How programs call a task (``POST /api/v1/<task>/<action>`` and ``/v2/models/<task>/infer``)."""

    #: ``POST /api/v1/<task>/<action>`` answers the uploads of the multipart field ``image``.
    action: str = "predict"
    #: Other actions answered by the same pipeline (``/api/v1/salt/refine``: ``segment`` with clicks).
    aliases: tuple[str, ...] = ()
    #: OpenAPI: the route's form fields (name -> JSON schema with a description), the properties of
    #: one result (name -> JSON schema) and the error codes the route can answer besides the common ones.
    fields: dict[str, dict] = {}
    result_schema: dict[str, dict] = {}
    errors: tuple[str, ...] = ()
    #: Error codes new with this task: code -> (HTTP status, meaning); registered in the app's error
    #: table at start-up (:func:`app.errors.register_codes`), so no server module changes for them.
    error_codes: dict[str, tuple[int, str]] = {}
    #: Open Inference Protocol outputs: (name, datatype, shape with -1 for variable dimensions).
    v2_output_specs: list[tuple[str, str, list[int]]] = []

    def v2_outputs(self, results: list[dict], **options) -> list[tuple[str, str, np.ndarray]]:
        """Open Inference Protocol output tensors ``(name, datatype, array)`` of the API results of one
        request (one element each); raises ValueError when they do not stack into tensors."""
        raise NotImplementedError


class TaskPage:
    """What people see of a task: menu entry, home card, pages, result template, history cell."""

    #: Menu entry and home card title, and the card's one-line description.
    title: str = ""
    blurb: str = ""
    #: The task's own pages (a blueprint with an ``upload`` view), or None for the generic page
    #: ``/tasks/<name>/``; ``has_page = False`` for a task answered on another task's page.
    blueprint: Blueprint | None = None
    has_page: bool = True
    #: Jinja template rendering one result ``r`` (the API result dict) on the generic page, and an
    #: extra template folder for it (None = the app's ``templates/``).
    result_template: str = "tasks/_result.html"
    template_folder: str | Path | None = None

    def url(self, task: str) -> str | None:
        """URL of the page of ``task`` (None when it has none)."""
        if not self.has_page:
            return None
        if self.blueprint is not None:
            return url_for(f"{self.blueprint.name}.upload")
        return url_for("tasks.page", task=task)

    def history_text(self, summary: dict[str, Any]) -> str:
        """One line for the history page's Result column, from a recorded summary."""
        return ""

    def history_url(self, public_id: str) -> str | None:
        """Link of a recorded answer on the history page: the generic answer page (``/answers/<id>``,
        the recorded summary as tables); a task with a result page of its own overrides it."""
        return url_for("main.answer", public_id=public_id)
