"""Image similarity feature: gallery thumbnails and the ``flask gallery`` commands."""
from flask import Blueprint

bp = Blueprint("similarity", __name__, url_prefix="/similarity")

from . import views  # noqa: E402,F401
