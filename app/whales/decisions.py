"""The researcher's verdict on a whale answer: confirm an individual or create a new one.

``POST /whales/answers/<prediction_id>/decide`` (admin token in the form): the query photo kept
with the answer is enrolled to the confirmed individual, or to a new id (``new-<8 hex>``), and a
:class:`app.records.WhaleDecision` row records who decided, when and from where.
"""
from __future__ import annotations

import uuid

from flask import abort, current_app, flash, redirect, request, url_for

from geovision.imaging import ImageError, decode_image
from geovision.metrics import NEW_WHALE

from ..accounts import admin_allowed, is_admin
from ..extensions import db
from ..records import Prediction, WhaleDecision
from ..storage import shared
from ..tasks import registry as tasks
from ..uploads import upload_root
from .forms import WhaleDecisionForm
from .views import bp


def new_whale_id() -> str:
    return f"new-{uuid.uuid4().hex[:8]}"


def query_photo(prediction_id: str):
    """Path of the query photo kept with a whale answer, or None."""
    folder = upload_root() / prediction_id[:2] / prediction_id
    shared().fetch(folder, folder=True)
    return next(iter(sorted(folder.glob("query.*"))), None) if folder.is_dir() else None


def decide(prediction: Prediction, action: str, whale_id: str, decided_by: str) -> WhaleDecision:
    """Enrol the answer's photo to ``whale_id`` (``new``: a new id) and record the decision.

    Raises FileNotFoundError when the photo is no longer kept, ValueError for a bad id.
    """
    path = query_photo(prediction.public_id)
    if path is None:
        raise FileNotFoundError("the photo of this answer is no longer kept")
    if action == "new":
        whale_id = new_whale_id()
    if not whale_id or whale_id == NEW_WHALE:
        raise ValueError("choose the individual to confirm")
    data = path.read_bytes()
    image = decode_image(data, current_app.config["MAX_IMAGE_PIXELS"])
    tasks.get("whales").add_to_gallery(whale_id, [(prediction.filename, image, data)])
    row = WhaleDecision(prediction_id=prediction.public_id, action=action, whale_id=whale_id,
                        decided_by=decided_by.strip(), client=(request.remote_addr or "")[:64])
    db.session.add(row)
    db.session.commit()
    return row


@bp.post("/answers/<prediction_id>/decide")
def decide_page(prediction_id: str):
    if not is_admin() and not current_app.config.get("ADMIN_TOKEN"):
        abort(404)
    prediction = db.session.execute(db.select(Prediction).filter_by(public_id=prediction_id, task="whales")
                                    ).scalar_one_or_none()
    if prediction is None:
        abort(404)
    form = WhaleDecisionForm()
    if not form.validate_on_submit():
        flash("; ".join(e for errs in form.errors.values() for e in errs), "error")
        return redirect(url_for("whales.upload")), 303
    if not admin_allowed(form.admin_token.data):
        flash("wrong admin token", "error")
        return redirect(url_for("whales.upload")), 303
    action = "new" if form.new.data else "confirm"
    try:
        row = decide(prediction, action, (form.whale_id.data or "").strip(), form.decided_by.data)
    except (FileNotFoundError, ValueError, ImageError) as exc:
        flash(str(exc), "error")
        return redirect(url_for("whales.upload")), 303
    verb = "confirmed as" if action == "confirm" else "enrolled as the new individual"
    flash(f"{prediction.filename} {verb} {row.whale_id} by {row.decided_by}; the photo is in the gallery", "ok")
    return redirect(url_for("whales.upload")), 303


def export_decisions(path) -> int:
    """Write the researchers' decisions as training labels: a CSV ``Image,Id,viewpoint,encounter_id``
    (``Image`` the kept query photo's absolute path, ``Id`` the confirmed or new individual; the
    latest decision per answer wins; answers whose photo is gone are left out). Returns the rows."""
    import csv

    latest: dict[str, WhaleDecision] = {}
    for row in db.session.scalars(db.select(WhaleDecision).order_by(WhaleDecision.created_at, WhaleDecision.id)):
        latest[row.prediction_id] = row
    rows = []
    for prediction_id, row in sorted(latest.items()):
        photo = query_photo(prediction_id)
        if photo is not None:
            rows.append({"Image": str(photo.resolve()), "Id": row.whale_id, "viewpoint": "",
                         "encounter_id": f"decision-{prediction_id}"})
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["Image", "Id", "viewpoint", "encounter_id"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
