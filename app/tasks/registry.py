"""Look-ups in the current app's registered tasks (set by :func:`app.tasks.init_app`)."""
from __future__ import annotations

from flask import Flask, abort, current_app

from .handler import TaskHandler


def registered(app: Flask | None = None) -> dict[str, TaskHandler]:
    """Task name -> handler of ``app`` (default: the current app), in registration order."""
    return (app or current_app).extensions["tasks"]


def get(name: str) -> TaskHandler:
    """The handler of task ``name``; aborts with 404 when no such task is registered."""
    handler = registered().get(name)
    if handler is None:
        abort(404)
    return handler
