"""The one recorder: what the pure pipeline answered is written here, and only here.

:meth:`app.tasks.handler.TaskHandler.run` returns an :class:`Outcome` and writes
nothing. :func:`record` keeps a request's outcomes: each answer's artefacts in its folder under
``UPLOAD_FOLDER`` (published to the shared store, :mod:`app.storage`), then every row, in one
commit; if anything fails, the rows are rolled back and the folders removed, so the database and
the disk hold only answers a client received. :func:`app.serve.serve` (every entry point's path) calls it
through :func:`app.serve.keep`.
"""
from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from PIL import Image

from .extensions import db
from .outcome import Artefact, Outcome
from .records import Prediction
from .storage import shared, upload_root

log = logging.getLogger(__name__)

def storage_dir(public_id: str) -> Path:
    """Folder of one answer's files (generated id, outside ``static/``)."""
    return upload_root() / public_id[:2] / public_id


def _write(path: Path, artefact: Artefact) -> None:
    if isinstance(artefact, bytes):
        path.write_bytes(artefact)
    elif isinstance(artefact, Image.Image):
        artefact.save(path, "PNG", compress_level=1)
    else:
        artefact(path)


def record(outcomes: list[Outcome], owner_id: int, commit: bool = True) -> list[dict]:
    """Keep ``outcomes``: their files, then one :class:`app.records.Prediction` row each, one commit.

    ``owner_id``: the account the rows belong to (:mod:`app.accounts`). With ``commit=False`` the
    rows are only added to the session (a job commits them with its own state).
    Returns the answers ``{"filename", **result, "prediction_id"}`` in order, without URLs.
    Raises what the file store or the database raise, after undoing what it wrote.
    """
    answers, folders = [], []
    try:
        for outcome in outcomes:
            public_id = uuid.uuid4().hex
            if outcome.artefacts:
                folder = storage_dir(public_id)
                folder.mkdir(parents=True, exist_ok=True)
                folders.append(folder)
                for name, artefact in outcome.artefacts.items():
                    _write(folder / name, artefact)
                shared().publish(folder)   # files first, then the row
            t = outcome.timings
            db.session.add(Prediction(
                public_id=public_id, task=outcome.task, filename=outcome.filename, input_sha256=outcome.sha256,
                width=outcome.size[0], height=outcome.size[1], model_name=outcome.model_name,
                model_version=outcome.model_version, result=outcome.summary, owner_id=owner_id,
                decode_ms=t.get("decode_ms", 0.0), inference_ms=t.get("inference_ms", 0.0),
                total_ms=t.get("total_ms", 0.0)))
            answers.append({"filename": outcome.filename, **outcome.result, "prediction_id": public_id})
        if commit:
            db.session.commit()
    except BaseException:
        db.session.rollback()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
            try:
                shared().remove(folder)        # a copy already published to the store goes too
            except Exception:  # noqa: BLE001 - the original error is the one to raise
                log.exception("could not remove %s from the store", folder)
        raise
    return answers


def add_artefact(public_id: str, name: str, artefact: Artefact) -> Path:
    """Keep one more file in a recorded answer's folder (a figure drawn on its first view): written
    under a temporary name and renamed (a concurrent viewer never reads half a file), then
    published to the shared store like the answer's other files. Returns its path."""
    folder = storage_dir(public_id)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}-{uuid.uuid4().hex}"
    _write(tmp, artefact)
    tmp.replace(folder / name)
    shared().publish(folder / name)
    return folder / name
