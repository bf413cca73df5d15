"""Fixing a salt answer with clicks on its page: ``POST /salt/result/<id>/refine`` reruns the answer's
own input (the stored picture with its data area, or the SEG-Y slice) with the clicks, records the
refined answer and returns its overlay (``static/refine.js`` calls it; :mod:`geovision.refine`)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from flask import abort, current_app, jsonify, request, url_for
from werkzeug.datastructures import MultiDict

from geovision import tiling
from geovision.tiling import OVERLAP

from ..accounts import visible
from ..errors import ApiError, ErrorCode
from ..extensions import db, engine
from ..records import Prediction
from ..serve import Refused, serve
from ..tasks import registry as tasks
from ..uploads import Upload, find_stored
from . import tile_cache
from .blueprint import bp
from .volumes import load_segy


def _source(row: Prediction) -> tuple[object, dict]:
    """The item and the form fields that reproduce ``row``'s answer (clicks aside)."""
    result = row.result
    fields = {"threshold": str(result["threshold"]), "domain": result.get("domain", "time")}
    if result.get("segy_id") and result.get("slice"):
        found = load_segy(result["segy_id"])
        if found is None:
            raise ApiError(ErrorCode.NOT_FOUND, "the SEG-Y volume of this answer is no longer stored", 404)
        return found[0], {**fields, "slice": result["slice"]}
    picture = find_stored(row.public_id, "input.png")
    if picture is None:
        raise ApiError(ErrorCode.NOT_FOUND, "the input of this answer is no longer stored", 404)
    area = result.get("data_area") or {"source": "auto"}
    crop = ",".join(str(area[k]) for k in ("left", "top", "right", "bottom")) if area["source"] == "user" else area["source"]
    return StoredInput(row.filename, picture.read_bytes(), row.input_sha256), {**fields, "data_area": crop}


@dataclass
class StoredInput(Upload):
    """The kept picture of an answer, named by the SHA-256 of the upload it was made from: the
    released model's outputs of that upload (:mod:`app.salt.tile_cache`) serve its refinements."""

    original_sha256: str = ""

    @property
    def sha256(self) -> str:
        return self.original_sha256 or super().sha256


@bp.post("/result/<public_id>/refine")
def refine_result(public_id: str):
    """JSON ``{"clicks": [{"x", "y", "salt"}]}`` (CSRF token in ``X-CSRFToken``) -> the refined
    answer's ``prediction_id``, ``overlay_url``, ``mask_url``, ``coverage`` and ``clicks``. The released
    model's outputs of the input are reused when this process answered it moments ago
    (:mod:`app.salt.tile_cache`): only the clicked tiles run again. Without them, an input of more
    than ``SYNC_MAX_TILES`` tiles is refused (413): click editing answers while the user waits."""
    row = db.session.scalar(visible(db.select(Prediction).where(
        Prediction.public_id == public_id, Prediction.task == "salt"), Prediction))
    if row is None or row.result.get("slice") == "volume":
        abort(404)
    body = request.get_json(silent=True) or {}
    handler = tasks.get("salt")
    handler.check_ready()
    item, fields = _source(row)
    options = handler.parse_options(MultiDict({**fields, "clicks": json.dumps(body.get("clicks", []))}))
    limit = current_app.config["SYNC_MAX_TILES"]
    key = tile_cache.output_key(item, engine.checkpoint("salt"), options["spec"], options["domain"], options["data_area"])
    cached = current_app.extensions[tile_cache.EXTENSION].get(key) is not None
    if not cached and tiling.tile_count(row.height, row.width, OVERLAP) > limit:
        raise ApiError(ErrorCode.IMAGE_TOO_LARGE, f"click editing works on inputs of up to {limit} tiles (SYNC_MAX_TILES); "
                       "this one is larger: crop it (data_area) or segment a smaller slice", 413)
    def refined(_, outcome):
        outcome.summary["refined_from"] = row.result.get("refined_from") or row.public_id
        return outcome

    (result,) = serve(handler, [item], options, queue=False, then=refined)
    if isinstance(result, Refused):
        raise ApiError(result.code, result.message, result.status)
    answer = result.body
    public_id = answer["prediction_id"]
    return jsonify(prediction_id=public_id, overlay_url=answer["overlay_url"], mask_url=answer["mask_url"],
                   coverage=answer["coverage"], clicks=answer.get("clicks", 0),
                   result_url=url_for("salt.result", public_id=public_id),
                   correction_url=url_for("salt.save_correction", public_id=public_id))
