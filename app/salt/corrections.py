"""Salt masks fixed with clicks, kept as training data: save one (its owner), list them (owners their
own, admins all), export them in the TGS layout (admins; ``flask train-model salt --corrections``).

A correction is a row (:class:`app.records.SaltCorrection`) naming the refined answer; the image and
the corrected mask are that answer's stored ``input.png`` and ``mask.png`` (the existing storage,
shared with other front ends through the object store). The export cuts each into 101x101 tiles
(the TGS size: a tile as it is, a larger picture in a grid of tiles covering it, a smaller one
mirrored up to 101) and writes ``images/``, ``masks/`` and ``train.csv`` (``id,rle_mask``).
"""
from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from flask import abort, jsonify, render_template, send_file, url_for
from PIL import Image

from geovision.rle import rle_encode
from geovision.tiling import TILE

from ..accounts import current_owner_id, is_admin, visible
from ..extensions import db
from ..records import Prediction, SaltCorrection
from ..uploads import find_stored
from .blueprint import bp


@bp.post("/result/<public_id>/correction")
def save_correction(public_id: str):
    """Save the refined answer ``public_id`` (made with clicks) as a correction; idempotent."""
    row = db.session.scalar(visible(db.select(Prediction).where(
        Prediction.public_id == public_id, Prediction.task == "salt"), Prediction))
    if row is None:
        abort(404)
    clicks = row.result.get("clicks_made") or []
    if not clicks:
        return jsonify(error={"code": "bad_request", "message": "only an answer fixed with clicks can be saved"}), 400
    found = db.session.scalar(db.select(SaltCorrection).where(SaltCorrection.prediction_id == public_id))
    if found is None:
        found = SaltCorrection(prediction_id=public_id, source_id=row.result.get("refined_from", ""),
                               filename=row.filename, clicks=clicks, owner_id=current_owner_id())
        db.session.add(found)
        db.session.commit()
    return jsonify(correction_id=found.id, corrections_url=url_for("salt.corrections", _external=True))


@bp.get("/corrections")
def corrections():
    """The corrections the requester may see, newest first, with the admins' export link."""
    rows = db.session.scalars(visible(db.select(SaltCorrection), SaltCorrection)
                              .order_by(SaltCorrection.created_at.desc()).limit(500)).all()
    return render_template("salt/corrections.html", rows=rows, admin=is_admin())


def _tiles(image: np.ndarray, mask: np.ndarray):
    """(row, column, image tile, mask tile) of 101x101 tiles covering a picture (mirrored up when smaller)."""
    h, w = image.shape
    if h < TILE or w < TILE:
        pad = ((0, max(0, TILE - h)), (0, max(0, TILE - w)))
        image, mask = np.pad(image, pad, mode="symmetric"), np.pad(mask, pad, mode="symmetric")
        h, w = image.shape
    starts = lambda n: sorted({*range(0, n - TILE + 1, TILE), n - TILE})  # noqa: E731 - the last flush to the edge
    for r in starts(h):
        for c in starts(w):
            yield r, c, image[r:r + TILE, c:c + TILE], mask[r:r + TILE, c:c + TILE]


def export_corrections(folder: Path, rows: list[SaltCorrection] | None = None) -> int:
    """Write every correction (or ``rows``) into ``folder`` in the TGS layout; returns the tiles written."""
    if rows is None:
        rows = db.session.scalars(db.select(SaltCorrection).order_by(SaltCorrection.id)).all()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    written = []
    for row in rows:
        picture, mask_png = find_stored(row.prediction_id, "input.png"), find_stored(row.prediction_id, "mask.png")
        if picture is None or mask_png is None:
            continue                                  # its files were pruned by the retention
        with Image.open(picture) as im, Image.open(mask_png) as m:
            image, mask = np.asarray(im.convert("L")), np.asarray(m.convert("L")) > 127
        for r, c, tile, tile_mask in _tiles(image, mask):
            tile_id = f"correction{row.id}_{r}_{c}"
            Image.fromarray(tile).save(folder / "images" / f"{tile_id}.png")
            Image.fromarray(tile_mask.astype(np.uint8) * 255).save(folder / "masks" / f"{tile_id}.png")
            written.append({"id": tile_id, "rle_mask": rle_encode(tile_mask)})
    with open(folder / "train.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "rle_mask"])
        writer.writeheader()
        writer.writerows(written)
    return len(written)


@bp.get("/corrections/export.zip")
def export_zip():
    """Admins: every correction as a zip in the TGS layout (``images/``, ``masks/``, ``train.csv``)."""
    if not is_admin():
        abort(403)
    with tempfile.TemporaryDirectory() as tmp:
        export_corrections(Path(tmp))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(Path(tmp).rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(tmp).as_posix())
    buf.seek(0)
    return send_file(buf, mimetype="application/zip", as_attachment=True, download_name="salt-corrections.zip")
