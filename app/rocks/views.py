"""Rocks page: class probabilities and the most similar gallery images per upload."""
from __future__ import annotations

import base64

from flask import Blueprint, render_template, request

from ..gallery import GalleryUnavailable
from ..tasks import registry as tasks
from ..uploads import Upload, answer_each, read_uploads
from .forms import RocksUploadForm

bp = Blueprint("rocks", __name__, url_prefix="/rocks")


@bp.route("/", methods=["GET", "POST"])
def upload():
    form = RocksUploadForm()
    answers: list[dict] = []
    errors: list[dict] = []
    gallery_error = None
    status = 400 if request.method == "POST" else 200
    if form.validate_on_submit():
        uploads = read_uploads(form.image.data or [])
        if not uploads:
            form.image.errors.append("choose at least one image")
        rocks, similarity = tasks.get("rocks"), tasks.get("similarity")
        rocks.check_ready()

        def handle(up: Upload) -> dict:
            nonlocal gallery_error
            answer = {"filename": up.filename, "classification": rocks.answer(up),
                      "thumbnail": "data:image;base64," + base64.b64encode(up.data).decode()}
            try:
                answer["similar"] = similarity.answer(up, k=form.k.data or 10, method=form.method.data)
            except GalleryUnavailable as exc:
                gallery_error = str(exc)
            return answer

        results, _ = answer_each(uploads, handle)
        answers = [r for r in results if "error" not in r]
        errors = [r for r in results if "error" in r]
        status = 200 if answers else 400
    return render_template("rocks/upload.html", form=form, answers=answers, errors=errors,
                           gallery_error=gallery_error), status
