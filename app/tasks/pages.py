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

from ..recorder import answer_each
from ..uploads import IMAGE_EXTENSIONS, read_uploads
from .registry import get

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


def answer_page_uploads(form, handle: Callable, empty: str = "choose at least one image",
                        read: Callable = read_uploads, links: Callable | None = None) -> PageAnswers:
    """The upload preamble every task page shares: on a valid POST, read the form's ``image``
    files (``read``), ask for one when there is none, answer each with ``handle(upload)`` (an
    :class:`app.tasks.handler.Outcome`, recorded by :func:`app.recorder.answer_each` with the
    ``links`` given; a bad file gets its own error entry) and split answers from errors; 400 when
    nothing was answered.
    A GET (or an invalid form) answers nothing: 200 for a GET, 400 for a POST."""
    out = PageAnswers(status=400 if request.method == "POST" else 200)
    if not form.validate_on_submit():
        return out
    uploads = read(form.image.data or [])
    if not uploads:
        form.image.errors.append(empty)
        return out
    results, answered = answer_each(uploads, handle, links)
    out.answers = [r for r in results if "error" not in r]
    out.errors = [r for r in results if "error" in r]
    out.status = 200 if answered else 400
    return out


@bp.route("/<task>/", methods=["GET", "POST"])
def page(task: str):
    handler = get(task)
    if handler.page.blueprint is not None or not handler.page.has_page:
        abort(404)
    form = TaskUploadForm()
    if request.method == "POST":
        handler.check_ready()
    page_answers = answer_page_uploads(form, handler.run, read=handler.read_inputs, links=handler.links)
    return render_template("tasks/page.html", handler=handler, form=form, answers=page_answers.answers,
                           errors=page_answers.errors), page_answers.status
