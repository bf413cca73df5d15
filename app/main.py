"""Home, history and models pages; the menu and the home cards list the registered tasks."""
from flask import Blueprint, abort, current_app, render_template, request

from .accounts import visible
from .extensions import db, engine
from .records import Prediction
from .tasks import registry as tasks

bp = Blueprint("main", __name__)


@bp.get("/")
def index():
    state = engine.state
    return render_template("index.html", status=state.status, loaded=state.checkpoints)


@bp.get("/history")
def history():
    page = request.args.get("page", 1, type=int)
    query = visible(db.select(Prediction), Prediction).order_by(Prediction.created_at.desc(), Prediction.id.desc())
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


@bp.get("/answers/<public_id>")
def answer(public_id: str):
    """A recorded answer reopened from the history: its summary as the database keeps it (404 for
    another user's answer, as for an unknown one)."""
    query = visible(db.select(Prediction), Prediction).where(Prediction.public_id == public_id)
    prediction = db.session.execute(query).scalar_one_or_none()
    if prediction is None:
        abort(404)
    handler = tasks.registered().get(prediction.task)
    return render_template("answer.html", p=prediction, handler=handler)
