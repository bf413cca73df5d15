"""The salt pages' blueprint (``/salt``), shared by the page modules (:mod:`.views`, :mod:`.volume_views`)."""
from flask import Blueprint

bp = Blueprint("salt", __name__, url_prefix="/salt")
