"""The generic upload page of a task without pages of its own: ``/tasks/<task>/``.

Each answered file is shown with the handler's ``result_template`` (the API result as ``r``).
"""
from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, MultipleFileField
from wtforms import SubmitField

from ..uploads import IMAGE_EXTENSIONS, answer_each
from .registry import get

bp = Blueprint("tasks", __name__, url_prefix="/tasks")


class TaskUploadForm(FlaskForm):
    image = MultipleFileField("Images (PNG, JPEG or TIFF; several at once)",
                              validators=[FileAllowed(IMAGE_EXTENSIONS, "PNG, JPEG or TIFF images only")])
    submit = SubmitField("Run")


@bp.route("/<task>/", methods=["GET", "POST"])
def page(task: str):
    handler = get(task)
    if handler.blueprint is not None or not handler.has_page:
        abort(404)
    form = TaskUploadForm()
    answers: list[dict] = []
    errors: list[dict] = []
    status = 400 if request.method == "POST" else 200
    if form.validate_on_submit():
        items = handler.read_inputs(form.image.data or [])
        if not items:
            form.image.errors.append("choose at least one image")
        else:
            handler.check_ready()
            results, answered = answer_each(items, handler.answer)
            answers = [r for r in results if "error" not in r]
            errors = [r for r in results if "error" in r]
            status = 200 if answered else 400
    return render_template("tasks/page.html", handler=handler, form=form, answers=answers, errors=errors), status
