"""Salt pages: upload form, results, stored result files."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from flask import Response, abort, flash, redirect, render_template, request, send_file, url_for
from markupsafe import Markup, escape
from PIL import Image

from geovision.imaging import ImageError

from .. import jobs
from ..accounts import can_see, visible
from ..engine import ModelNotReady
from ..errors import ApiError
from ..extensions import db, engine
from ..recorder import add_artefact
from ..records import Job, Prediction
from ..serve import Answered, Queued, Refused, answered_any, serve
from ..tasks import registry as tasks
from ..tasks.options import form_options
from ..uploads import find_stored
from . import result_figures, segy
from .blueprint import bp
from .forms import SaltUploadForm, SegySliceForm
from .options import SaltOptions
from .volume_views import render_volume
from .volumes import StoredSegy, load_segy, read_salt_files

MIMETYPES = {"png": "image/png", "txt": "text/plain"}


@bp.route("/", methods=["GET", "POST"])
def upload():
    form = SaltUploadForm()
    errors: list[dict] = []
    if form.validate_on_submit():
        items = read_salt_files(form.image.data or [])
        volumes = [i for i in items if isinstance(i, StoredSegy)]
        images = [i for i in items if not isinstance(i, StoredSegy)]
        # Only SEG-Y: go to the first volume's page and link the others; with images, link them all.
        only_volumes = bool(volumes) and not images
        for volume in volumes[1:] if only_volumes else volumes:
            flash(Markup("SEG-Y volume <a href=\"{}\">{}</a> is ready: pick a slice there.").format(
                url_for("salt.segy_page", segy_id=volume.segy_id), escape(volume.filename)), "ok")
        if only_volumes:
            return redirect(url_for("salt.segy_page", segy_id=volumes[0].segy_id))
        options = form_options(SaltOptions, form, slice=None, domain="time")   # a refusal shows under its field
        if options is None:
            pass
        elif not items:
            form.image.errors.append("choose at least one image or SEG-Y file")
        else:
            handler = tasks.get("salt")
            handler.check_ready()
            results = serve(handler, images, options)
            refused = [r for r in results if isinstance(r, Refused)]
            errors = [r.body for r in refused]
            queued = [r.body for r in results if isinstance(r, Queued)]
            for job in queued[1:] if len(queued) == len(results) else queued:
                flash(Markup("{} is large: it runs as a background job, <a href=\"{}\">follow it here</a>.").format(
                    job["filename"], url_for("salt.job_page", job_id=job["job_id"])), "ok")
            if queued and len(queued) == len(results):
                return redirect(url_for("salt.job_page", job_id=queued[0]["job_id"]))
            ok = [r.body["prediction_id"] for r in results if isinstance(r, Answered)]
            if answered_any(results) and not errors:
                return redirect(url_for("salt.results", id=ok))
            status = 200 if ok else (413 if all(r.status == 413 for r in refused) else 400)
            return render_template("salt/upload.html", form=form, errors=errors, predictions=_load(ok),
                                   seconds_per_tile=seconds_per_tile()), status
    status = 400 if request.method == "POST" else 200
    return render_template("salt/upload.html", form=form, errors=errors, predictions=[],
                           seconds_per_tile=seconds_per_tile()), status


@bp.context_processor
def default_threshold() -> dict:
    """``default_threshold``: the checkpoint's own cut, what a blank threshold field gives (its placeholder)."""
    try:
        return {"default_threshold": f"{float(engine.checkpoint('salt').meta.get('threshold', 0.5)):g}"}
    except ModelNotReady:
        return {"default_threshold": "0.5"}


def seconds_per_tile(recent: int = 50) -> float:
    """Seconds one tile of a section costs this server, for the page's progress estimate: the
    median of ``total_ms / tiles`` over the last ``recent`` salt answers of more than one tile,
    else the model's measured batch-32 float32 speed (``meta.json`` ``speed``) plus 50 %."""
    rows = db.session.execute(db.select(Prediction.total_ms, Prediction.result).where(Prediction.task == "salt")
                              .order_by(Prediction.id.desc()).limit(recent)).all()
    per_tile = [ms / 1000 / r["tiles"] for ms, r in rows if isinstance(r, dict) and (r.get("tiles") or 0) > 1]
    if per_tile:
        return float(np.median(per_tile))
    try:
        speed = engine.checkpoint("salt").meta.get("speed", {}).get("tiles_per_s_batch32_float32")
    except ModelNotReady:
        speed = None
    return 1.5 / float(speed) if speed else 0.1


@bp.route("/segy/<segy_id>", methods=["GET", "POST"])
def segy_page(segy_id: str):
    """Geometry of an uploaded SEG-Y volume and a form to segment one of its slices."""
    found = load_segy(segy_id)
    if found is None:
        abort(404)
    stored, geometry = found
    form = SegySliceForm()
    if request.method == "GET":
        default = segy.parse_slice(geometry["default_slice"])
        form.kind.data = default.kind
        form.number.data = int(default.number) if default.number is not None else None
    error, status = None, 200
    if form.validate_on_submit():
        number = "" if form.kind.data in ("section", "volume") or form.number.data is None else f":{form.number.data}"
        try:
            options = SaltOptions.parse({**form.data, "slice": form.kind.data + number}).hooks()   # OptionError: shown
            handler = tasks.get("salt")
            handler.check_ready()
            (result,) = serve(handler, [stored], options)
            if isinstance(result, Refused):
                raise ApiError(result.code, result.message, result.status)
            if isinstance(result, Queued):
                return redirect(url_for("salt.job_page", job_id=result.job.public_id))
            return redirect(url_for("salt.result", public_id=result.body["prediction_id"]))
        except (segy.SegyError, ImageError, ApiError) as exc:
            error, status = str(exc), getattr(exc, "status", 400)
    elif request.method == "POST":
        status = 400
    return render_template("salt/segy.html", form=form, stored=stored, geometry=geometry, error=error), status


@bp.route("/jobs/<job_id>", methods=["GET", "POST"])
def job_page(job_id: str):
    """A background job: progress bar (the page reloads itself every 2 s, no script needed), then
    the result; POST cancels it."""
    jobs.runner()
    job = db.session.scalar(db.select(Job).where(Job.public_id == job_id, Job.task == "salt"))
    if job is None or not can_see(job.owner_id):
        abort(404)
    if request.method == "POST":
        jobs.cancel(job)
        return redirect(url_for("salt.job_page", job_id=job_id))
    if job.status == "done" and job.result:
        return redirect(url_for("salt.result", public_id=job.result["prediction_id"]))
    return render_template("salt/job.html", job=jobs.describe(job))


@bp.get("/results")
def results():
    predictions = _load(request.args.getlist("id"))
    if not predictions:
        abort(404)
    return render_template("salt/results.html", predictions=predictions)


def csv_cell(text: str) -> str:
    """A CSV cell that a spreadsheet will not run: text starting with ``=``, ``+``, ``-``, ``@``, a tab
    or a carriage return gets a leading apostrophe (OWASP, "CSV Injection")."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.get("/submission.csv")
def submission():
    """Kaggle submission CSV (``id,rle_mask``; id = file name without extension) of the given results."""
    predictions = _load(request.args.getlist("id"))
    if not predictions:
        abort(404)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "rle_mask"])
    writer.writerows([csv_cell(p.filename.rsplit(".", 1)[0]), p.result["rle_mask"]] for p in predictions)
    return Response(buf.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=submission.csv"})


@bp.get("/result/<public_id>")
def result(public_id: str):
    rows = _load([public_id]) or abort(404)
    if rows[0].result.get("slice") == "volume":   # a volume job's answer: the slice viewer
        return render_volume(rows[0])
    return render_template("salt/results.html", predictions=rows)


@bp.get("/files/<public_id>/<name>")
def result_file(public_id: str, name: str):
    if not _load([public_id]):   # not recorded, or another user's
        abort(404)
    path = find_stored(public_id, name)
    if path is None and name in ("mask.npy", "mask.csv"):   # a volume keeps its mask.npy as it is
        return _mask_grid(public_id, name.rsplit(".", 1)[1])
    mask = find_stored(public_id, "mask.png") if path is None else None
    if mask is not None and name in ("overlay.png", "figure.png", "probabilities.png"):
        path = _figure(public_id, mask.parent, name)
    if path is None:
        abort(404)
    download = request.args.get("download") == "1"
    stem = name.rsplit(".", 1)[0]
    return send_file(path, mimetype=MIMETYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream"),
                     as_attachment=download, download_name=f"{public_id}_{stem}.{name.rsplit('.', 1)[-1]}")


def _figure(public_id: str, folder: Path, name: str) -> Path | None:
    """``overlay.png``, ``figure.png`` or ``probabilities.png`` of a recorded answer, drawn on first
    view (:mod:`app.salt.result_figures`) and kept by the recorder (:func:`app.recorder.add_artefact`)."""
    rows = _load([public_id])
    if not rows:
        return None
    if name == "overlay.png":
        return add_artefact(public_id, name, result_figures.overlay(folder))
    if not (folder / "prob.png").exists():
        return None
    if name == "figure.png":
        overlay = find_stored(public_id, "overlay.png") or add_artefact(public_id, "overlay.png",
                                                                        result_figures.overlay(folder))
        return add_artefact(public_id, name, result_figures.overlay_figure(folder, overlay, rows[0]))
    return add_artefact(public_id, name, result_figures.probability_figure(folder, rows[0]))


def _mask_grid(public_id: str, fmt: str):
    """The mask as a grid: uint8 (rows, columns) of the input (samples x traces for a SEG-Y slice),
    1 salt, 0 no salt, 255 no data; ``fmt`` ``npy`` (NumPy) or ``csv`` (one row per line)."""
    mask = find_stored(public_id, "mask.png") or abort(404)
    with Image.open(mask) as m:
        grid = (np.asarray(m) > 0).astype(np.uint8)
    no_data = find_stored(public_id, "nodata.png")
    if no_data is not None:
        with Image.open(no_data) as nd:
            grid[np.asarray(nd) > 0] = 255
    buf = io.BytesIO()
    if fmt == "csv":
        np.savetxt(buf, grid, fmt="%d", delimiter=",")
    else:
        np.save(buf, grid)
    buf.seek(0)
    return send_file(buf, mimetype="text/csv" if fmt == "csv" else "application/octet-stream", as_attachment=True,
                     download_name=f"{public_id}_mask.{fmt}")


def _load(public_ids: list[str]) -> list[Prediction]:
    if not public_ids:
        return []
    rows = db.session.scalars(visible(db.select(Prediction).where(
        Prediction.public_id.in_(public_ids), Prediction.task == "salt"), Prediction)).all()
    order = {pid: i for i, pid in enumerate(public_ids)}
    return sorted(rows, key=lambda r: order[r.public_id])
