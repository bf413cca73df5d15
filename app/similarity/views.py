"""Gallery thumbnails and a redirect to the rocks page, where similarity search lives."""
import io

from flask import Blueprint, abort, redirect, send_file, url_for
from PIL import Image

from ..gallery import GalleryUnavailable, store

bp = Blueprint("similarity", __name__, url_prefix="/similarity")


@bp.get("/")
def index():
    return redirect(url_for("rocks.upload"))


@bp.get("/gallery/<int:item_id>.png")
def gallery_image(item_id: int):
    """PNG thumbnail of gallery row ``item_id`` (the pixels the seed methods compare)."""
    try:
        gallery = store().get("similarity")
    except GalleryUnavailable:
        abort(404)
    if not 0 <= item_id < len(gallery):
        abort(404)
    buf = io.BytesIO()
    Image.fromarray(gallery.pixels[item_id]).save(buf, "PNG")
    buf.seek(0)
    response = send_file(buf, mimetype="image/png", max_age=3600)
    return response
