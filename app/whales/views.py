"""Whale pages: identification, gallery photos and the admin enrolment form."""
from __future__ import annotations

import io

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from PIL import Image

from geovision.imaging import ImageError, decode_image

from ..accounts import admin_allowed, is_admin
from ..gallery import GalleryUnavailable, store
from ..task_pages import PageAnswers, answer_page_uploads
from ..tasks import registry as tasks
from ..tasks.options import form_options
from ..uploads import read_uploads
from . import gallery as whale_gallery
from .forms import WhaleDecisionForm, WhaleEnrolForm, WhaleUploadForm

bp = Blueprint("whales", __name__, url_prefix="/whales")

@bp.route("/", methods=["GET", "POST"])
def upload():
    form = WhaleUploadForm()
    gallery_error = None
    handler = tasks.get("whales")
    if request.method == "POST":
        handler.check_model()   # the gallery error is shown on the page

    try:
        options = form_options(handler.options_model, form) or {}
        page = answer_page_uploads(form, handler, {**options, "with_photos": True}, empty="choose at least one photo")
    except GalleryUnavailable as exc:
        page, gallery_error = PageAnswers(status=409), str(exc)
    answers, errors, status = page.answers, page.errors, page.status
    return render_template("whales/upload.html", form=form, answers=answers, errors=errors,
                           gallery_error=gallery_error, decision_form=WhaleDecisionForm(formdata=None),
                           admin=is_admin() or bool(current_app.config.get("ADMIN_TOKEN")),
                           need_token=not is_admin()), status


@bp.get("/gallery/<int:item_id>.jpg")
def gallery_image(item_id: int):
    """JPEG thumbnail (at most 256 px) of the whale gallery photo ``item_id``."""
    try:
        gallery = store().get("whales")
    except GalleryUnavailable:
        abort(404)
    if not 0 <= item_id < len(gallery):
        abort(404)
    try:
        with Image.open(whale_gallery.photo_path(gallery.items[item_id])) as im:
            data = whale_gallery.thumbnail_jpeg(im)
    except OSError:
        abort(404)
    return send_file(io.BytesIO(data), mimetype="image/jpeg", max_age=3600)


@bp.route("/enrol", methods=["GET", "POST"])
def enrol():
    """Admin page: add photos of a known or new individual to the gallery (a signed-in admin, or ADMIN_TOKEN)."""
    if not is_admin() and not current_app.config.get("ADMIN_TOKEN"):
        abort(404)
    form = WhaleEnrolForm()
    status = 400 if request.method == "POST" else 200
    if form.validate_on_submit():
        if not admin_allowed(form.admin_token.data):
            form.admin_token.errors.append("wrong admin token")
            return render_template("whales/enrol.html", form=form, need_token=True), 401
        photos, bad = [], []
        for up in read_uploads(form.image.data or []):
            try:
                photos.append((up.filename, decode_image(up.data, current_app.config["MAX_IMAGE_PIXELS"]), up.data))
            except ImageError as exc:
                bad.append(f"{up.filename}: {exc}")
        form.image.errors.extend(bad)
        if not photos and not bad:
            form.image.errors.append("choose at least one photo")
        if photos and not bad:
            size = tasks.get("whales").add_to_gallery(form.whale_id.data, photos)
            flash(f"enrolled {len(photos)} photo(s) of {form.whale_id.data.strip()}; the gallery now holds "
                  f"{size} photos", "ok")
            return redirect(url_for("whales.enrol"))
    return render_template("whales/enrol.html", form=form, need_token=not is_admin()), status
