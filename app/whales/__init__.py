"""Whale identification feature: page, enrolment page, service and gallery commands."""
from flask import Blueprint

bp = Blueprint("whales", __name__, url_prefix="/whales")

from . import views  # noqa: E402,F401
