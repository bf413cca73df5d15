"""The volume viewer: an inline, a crossline and a time (or depth) slice of a finished volume job,
salt probability over the amplitudes, each slice read from the stored files when asked for.

Only the requested slice is read from the input volume and from the answer (``salt.sgy``); the
browser never receives the cube. The pictures carry survey axes (inline and crossline numbers,
time in ms or depth in m) drawn by :func:`geovision.figures.with_axes`.
"""
from __future__ import annotations

import io

import numpy as np
from flask import abort, render_template, send_file

from geovision import figures, tiling

from ..accounts import visible
from ..extensions import db
from ..records import Prediction
from ..uploads import find_stored
from . import segy
from .blueprint import bp
from .inputs import section_grey
from .volumes import load_segy

KINDS = ("inline", "crossline", "time")
LEGEND = [((255, 64, 32), "salt probability"), ((176, 176, 176), "no data")]


def volume_prediction(public_id: str) -> Prediction:
    """The caller's recorded volume answer, else 404."""
    row = db.session.scalar(visible(db.select(Prediction).where(
        Prediction.public_id == public_id, Prediction.task == "salt"), Prediction))
    if row is None or row.result.get("slice") != "volume":
        abort(404)
    return row


def slider(axis: list, kind: str) -> dict:
    """``{"first", "last", "step", "value"}`` of one axis (``[first, last, count, step]``), in the middle."""
    first, last, count, step = axis
    return {"kind": kind, "first": first, "last": last, "step": step, "value": first + step * ((count - 1) // 2)}


def render_volume(row: Prediction):
    """The viewer page of one volume answer (``templates/salt/volume.html``)."""
    result = row.result
    volume = result["volume"]
    interval = volume["sample_interval"]
    first = volume["first_sample"]
    samples = [first, first + interval * (volume["samples"] - 1), volume["samples"], interval]
    sliders = [slider(volume["inlines"], "inline"), slider(volume["crosslines"], "crossline"), slider(samples, "time")]
    return render_template("salt/volume.html", prediction=row, result=result, sliders=sliders)


@bp.get("/volume/<public_id>/<kind>/<number>.png")
def volume_slice(public_id: str, kind: str, number: str):
    """PNG of one slice: ``kind`` inline, crossline or time; ``number`` its line number or its time
    (ms; depth in m) as in ``slice``. 404 for another user's answer or a slice outside the survey."""
    row = volume_prediction(public_id)
    if kind not in KINDS:
        abort(404)
    try:
        spec = segy.SliceSpec(kind, float(number))
    except ValueError:
        abort(404)
    answer = find_stored(public_id, "salt.sgy")
    stored = load_segy(row.result["segy_id"], check_owner=False)
    if answer is None or stored is None:
        abort(404)
    try:
        amplitudes = segy.read_slice(stored[0].path, spec)
        probs = segy.read_slice(answer, spec)
    except segy.SegyError:
        abort(404)
    gray, no_data = section_grey(amplitudes, vertical=kind != "time")
    picture = tiling.probability_overlay(gray, np.nan_to_num(probs), float(row.result["threshold"]), no_data)
    axes = segy.slice_axes(stored[1], spec, row.result.get("domain", "time"))
    picture = figures.with_axes(picture, axes["x"], axes["y"], title=f"{row.filename}: {spec}", legend=LEGEND)
    buf = io.BytesIO()
    picture.save(buf, "PNG", compress_level=1)
    buf.seek(0)
    return send_file(buf, mimetype="image/png", max_age=3600)
