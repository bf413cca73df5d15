"""The generic upload page of a task without pages of its own: ``/tasks/<task>/``.

Each answered file is shown with the task page's ``result_template`` (the API result as ``r``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Blueprint, abort, render_template, request
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, MultipleFileField
from wtforms import SubmitField

from .serve import Refused, answered_any, serve
from .tasks.registry import get
from .uploads import IMAGE_EXTENSIONS

bp = Blueprint("tasks", __name__, url_prefix="/tasks")


class TaskUploadForm(FlaskForm):
    image = MultipleFileField("Images (PNG, JPEG or TIFF; several at once)",
                              validators=[FileAllowed(IMAGE_EXTENSIONS, "PNG, JPEG or TIFF images only")])
    submit = SubmitField("Run")


@dataclass
class PageAnswers:
    """What an upload page shows after a POST: the answered files, the refused ones and the status."""

    answers: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    status: int = 200


def answer_page_uploads(form, handler, options: dict | None = None, empty: str = "choose at least one image",
                        then: Callable | None = None) -> PageAnswers:
    """The upload preamble every task page shares: on a valid POST, read the form's ``image``
    files (the handler's ``read_inputs``), ask for one when there is none, answer them all with
    :func:`app.serve.serve` (``options``: the handler's; ``then(upload, outcome)`` completes each
    outcome for the page; a bad file gets its own error entry) and split answers from errors; 400
    when nothing was answered. A GET (or an invalid form) answers nothing: 200 for a GET, 400 for a POST."""
    out = PageAnswers(status=400 if request.method == "POST" else 200)
    if not form.validate_on_submit():
        return out
    uploads = handler.read_inputs(form.image.data or [])
    if not uploads:
        form.image.errors.append(empty)
        return out
    results = serve(handler, uploads, options or {}, then=then)
    out.answers = [r.body for r in results if not isinstance(r, Refused)]
    out.errors = [r.body for r in results if isinstance(r, Refused)]
    out.status = 200 if answered_any(results) else 400
    return out


@bp.route("/<task>/", methods=["GET", "POST"])
def page(task: str):
    handler = get(task)
    if handler.page.blueprint is not None or not handler.page.has_page:
        abort(404)
    form = TaskUploadForm()
    if request.method == "POST":
        handler.check_ready()
    page_answers = answer_page_uploads(form, handler)
    return render_template("tasks/page.html", handler=handler, form=form, answers=page_answers.answers,
                           errors=page_answers.errors), page_answers.status
