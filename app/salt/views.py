"""Salt pages: upload form, results, stored result files."""
from __future__ import annotations

import csv
import io

from flask import Response, abort, redirect, render_template, request, send_file, url_for

from ..extensions import db, engine
from ..records import Prediction
from ..uploads import answer_each, find_stored, read_uploads
from . import bp, service
from .forms import SaltUploadForm

MIMETYPES = {"png": "image/png", "txt": "text/plain"}


@bp.route("/", methods=["GET", "POST"])
def upload():
    form = SaltUploadForm()
    errors: list[dict] = []
    if form.validate_on_submit():
        uploads = read_uploads(form.image.data or [])
        if not uploads:
            form.image.errors.append("choose at least one image")
        else:
            threshold = float(form.threshold.data) if form.threshold.data is not None else None
            engine.checkpoint(service.TASK)
            results, answered = answer_each(uploads, lambda u: service.segment(u, threshold))
            errors = [r for r in results if "error" in r]
            if answered and not errors:
                ids = [r["prediction_id"] for r in results]
                return redirect(url_for("salt.results", id=ids))
            ok = [r["prediction_id"] for r in results if "error" not in r]
            return render_template("salt/upload.html", form=form, errors=errors,
                                   predictions=_load(ok)), 200 if ok else 400
    status = 400 if request.method == "POST" else 200
    return render_template("salt/upload.html", form=form, errors=errors, predictions=[]), status


@bp.get("/results")
def results():
    predictions = _load(request.args.getlist("id"))
    if not predictions:
        abort(404)
    return render_template("salt/results.html", predictions=predictions)


@bp.get("/submission.csv")
def submission():
    """Kaggle submission CSV (``id,rle_mask``; id = file name without extension) of the given results."""
    predictions = _load(request.args.getlist("id"))
    if not predictions:
        abort(404)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "rle_mask"])
    writer.writerows([p.filename.rsplit(".", 1)[0], p.result["rle_mask"]] for p in predictions)
    return Response(buf.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=submission.csv"})


@bp.get("/result/<public_id>")
def result(public_id: str):
    return render_template("salt/results.html", predictions=_load([public_id]) or abort(404))


@bp.get("/files/<public_id>/<name>")
def result_file(public_id: str, name: str):
    path = find_stored(public_id, name)
    if path is None and name == "overlay.png":
        mask = find_stored(public_id, "mask.png")
        path = service.render_overlay(mask.parent) if mask else None
    if path is None:
        abort(404)
    download = request.args.get("download") == "1"
    stem = name.rsplit(".", 1)[0]
    return send_file(path, mimetype=MIMETYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream"),
                     as_attachment=download, download_name=f"{public_id}_{stem}.{name.rsplit('.', 1)[-1]}")


def _load(public_ids: list[str]) -> list[Prediction]:
    if not public_ids:
        return []
    rows = db.session.scalars(db.select(Prediction).where(
        Prediction.public_id.in_(public_ids), Prediction.task == service.TASK)).all()
    order = {pid: i for i, pid in enumerate(public_ids)}
    return sorted(rows, key=lambda r: order[r.public_id])
