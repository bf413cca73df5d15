"""Rocks page: class probabilities and the most similar gallery images per upload."""
from __future__ import annotations

import base64

from flask import Blueprint, render_template, request

from ..gallery import GalleryUnavailable
from ..tasks import registry as tasks
from ..tasks.pages import answer_page_uploads
from ..uploads import Upload
from .forms import RocksUploadForm

bp = Blueprint("rocks", __name__, url_prefix="/rocks")


@bp.route("/", methods=["GET", "POST"])
def upload():
    form = RocksUploadForm()
    gallery_error = None
    rocks, similarity = tasks.get("rocks"), tasks.get("similarity")
    if request.method == "POST":
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

    page = answer_page_uploads(form, handle)
    return render_template("rocks/upload.html", form=form, answers=page.answers, errors=page.errors,
                           gallery_error=gallery_error), page.status
