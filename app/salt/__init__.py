"""Salt segmentation feature: pages, service and pre/post-processing."""
from flask import Blueprint

bp = Blueprint("salt", __name__, url_prefix="/salt")

from . import views  # noqa: E402,F401  (registers the routes on bp)
