"""Rocks page: class probabilities and the most similar gallery images per upload."""
from __future__ import annotations

import base64

from flask import render_template, request

from ..extensions import engine
from ..gallery import GalleryUnavailable
from ..uploads import Upload, answer_each, read_uploads
from . import bp, service
from .forms import RocksUploadForm


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
        engine.checkpoint(service.ROCKS)

        def handle(up: Upload) -> dict:
            nonlocal gallery_error
            answer = {"filename": up.filename, "classification": service.classify(up),
                      "thumbnail": "data:image;base64," + base64.b64encode(up.data).decode()}
            try:
                answer["similar"] = service.search(up, form.k.data or 10, form.method.data)
            except GalleryUnavailable as exc:
                gallery_error = str(exc)
            return answer

        results, _ = answer_each(uploads, handle)
        answers = [r for r in results if "error" not in r]
        errors = [r for r in results if "error" in r]
        status = 200 if answers else 400
    return render_template("rocks/upload.html", form=form, answers=answers, errors=errors,
                           gallery_error=gallery_error), status
