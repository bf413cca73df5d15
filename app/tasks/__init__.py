"""The registered tasks: one :class:`~app.tasks.handler.TaskHandler` per served model.

``create_app`` registers :func:`app.default_tasks` (or the list it is given); the menu, the home
page, the history, the JSON API, the admin gallery API and the ``flask gallery`` commands loop
over ``app.extensions["tasks"]``, reading each handler's ``api`` (:class:`TaskApi`) and ``page``
(:class:`TaskPage`). Adding a realistic task touches 8 places: its handler, options, parts and
page, two templates, a ``models/<task>/`` folder, one line in :func:`app.default_tasks` and its
rows in docs/API.md (docs/ARCHITECTURE.md, "Adding a model").
"""
from __future__ import annotations

from flask import Flask, current_app, request
from jinja2 import ChoiceLoader, FileSystemLoader

from ..errors import register_codes
from ..outcome import Outcome
from .handler import Prepared, TaskHandler
from .parts import TaskApi, TaskPage
from .registry import get, registered

__all__ = ["Outcome", "Prepared", "TaskApi", "TaskHandler", "TaskPage", "get", "init_app", "registered"]


def init_app(app: Flask, handlers: list[TaskHandler]) -> None:
    """Register ``handlers``: their config defaults, CLI commands, blueprints and templates."""
    from . import galleries

    tasks: dict[str, TaskHandler] = {}
    for handler in handlers:
        if not handler.name or handler.name in tasks:
            raise ValueError(f"task names must be unique and non-empty: {handler.name!r}")
        tasks[handler.name] = handler
        handler.init_app(app)
        register_codes(app, {**handler.options_model.error_table(), **handler.api.error_codes})
        if handler.page.blueprint is not None:
            app.register_blueprint(handler.page.blueprint)
        if handler.page.template_folder is not None:
            app.jinja_loader = ChoiceLoader([app.jinja_loader, FileSystemLoader(str(handler.page.template_folder))])
    for handler in tasks.values():
        missing = [name for name in handler.uses if name not in tasks]
        if missing:
            raise ValueError(f"task {handler.name!r} uses {', '.join(missing)}, which is not registered")
    app.extensions["tasks"] = tasks
    galleries.init_app(app)
    app.context_processor(lambda: {"tasks": tasks})
    app.before_request(_allow_large_uploads)


#: API endpoints that take a task's uploads (the task comes from the URL).
UPLOAD_ENDPOINTS = {"api.task_api", "api.job_create"}


def _allow_large_uploads() -> None:
    """Raise the request-size limit for a task whose ``request_limit`` allows more (SEG-Y uploads:
    each file is then held to its own limit by the handler): its upload page and its API routes."""
    name = (request.view_args or {}).get("task") if request.blueprint in ("api", "tasks") else request.blueprint
    handler = current_app.extensions["tasks"].get(name or "")
    if handler is not None and (request.endpoint in UPLOAD_ENDPOINTS or request.endpoint == f"{name}.upload"):
        limit = handler.request_limit(current_app.config)
        if limit is not None:
            request.max_content_length = limit
