"""Rock classification feature: page (with the similarity panel) and service."""
from flask import Blueprint

bp = Blueprint("rocks", __name__, url_prefix="/rocks")

from . import views  # noqa: E402,F401
