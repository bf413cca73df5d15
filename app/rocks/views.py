"""Rocks page: class probabilities and the most similar gallery images per upload, recorded as one row."""
from __future__ import annotations

import base64

from flask import Blueprint, render_template, request

from ..gallery import GalleryUnavailable
from ..recorder import Outcome
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

    def handle(up: Upload) -> Outcome:
        """One row per upload: the classification, with the similarity search in its summary."""
        nonlocal gallery_error
        outcome = rocks.run(up)
        outcome.result = {"classification": outcome.result,
                          "thumbnail": "data:image;base64," + base64.b64encode(up.data).decode()}
        try:
            found = similarity.run(up, k=form.k.data or 10, method=form.method.data)
        except GalleryUnavailable as exc:
            gallery_error = str(exc)
            return outcome
        outcome.result["similar"] = similarity.links(found.result)
        outcome.summary = {**outcome.summary, "similar": found.summary}
        outcome.timings = {key: ms + found.timings.get(key, 0.0) for key, ms in outcome.timings.items()}
        return outcome

    page = answer_page_uploads(form, handle)
    return render_template("rocks/upload.html", form=form, answers=page.answers, errors=page.errors,
                           gallery_error=gallery_error), page.status
