"""Home and history pages."""
from flask import Blueprint, current_app, render_template, request

from .extensions import db, engine
from .records import Prediction

bp = Blueprint("main", __name__)

TASK_PAGES = {
    "salt": ("salt.upload", "Salt segmentation", "Seismic tiles or whole sections: salt mask, coverage, Kaggle RLE"),
    "rocks": ("rocks.upload", "Rock classification", "Rock type with probabilities, and the most similar gallery images"),
}


@bp.get("/")
def index():
    state = engine.state
    return render_template("index.html", pages=TASK_PAGES, status=state.status, loaded=state.checkpoints)


@bp.get("/history")
def history():
    page = request.args.get("page", 1, type=int)
    query = db.select(Prediction).order_by(Prediction.created_at.desc(), Prediction.id.desc())
    task = request.args.get("task")
    if task:
        query = query.where(Prediction.task == task)
    pagination = db.paginate(query, page=page, per_page=current_app.config["HISTORY_PER_PAGE"], error_out=False)
    return render_template("history.html", pagination=pagination, task=task)


@bp.get("/models")
def models():
    state = engine.state
    return render_template("models.html", models=engine.describe(), status=state.status, errors=state.errors,
                           device=str(state.device), load_seconds=state.load_seconds)
