"""Rocks page: class probabilities and the most similar gallery images per upload, recorded as one row."""
from __future__ import annotations

import base64

from flask import Blueprint, render_template, request

from ..gallery import GalleryUnavailable
from ..outcome import Outcome
from ..task_pages import answer_page_uploads
from ..tasks import registry as tasks
from ..tasks.options import form_options
from ..uploads import Upload
from .forms import RocksUploadForm

bp = Blueprint("rocks", __name__, url_prefix="/rocks")


@bp.route("/", methods=["GET", "POST"])
def upload():
    form = RocksUploadForm()
    gallery_error = None
    rocks = tasks.get("rocks")
    similarity = rocks.dependency("similarity")
    if request.method == "POST":
        rocks.check_ready()

    def compose(up: Upload, outcome: Outcome) -> Outcome:
        """One forward pass and one row per upload: the classification, and the similarity search
        from the same pass's embedding (a checkpoint without it: the similarity task's own pass);
        the handler's links add the matches' image URLs."""
        nonlocal gallery_error
        similar, gallery_error = outcome.result.pop("similar", None), outcome.result.pop("similar_error", gallery_error)
        if similar is None and gallery_error is None:
            try:
                found = similarity.run(up, **search)
                similar, outcome.summary["similar"] = found.result, found.summary
            except GalleryUnavailable as exc:
                gallery_error = str(exc)
        outcome.result = {"classification": outcome.result, "similar": similar,
                          "thumbnail": "data:image;base64," + base64.b64encode(up.data).decode()}
        return outcome

    search = form_options(similarity.options_model, form) or {}
    page = answer_page_uploads(form, rocks, {"similar": search}, then=compose)
    return render_template("rocks/upload.html", form=form, answers=page.answers, errors=page.errors,
                           gallery_error=gallery_error), page.status
