"""Upload handling shared by every task: reading files, per-file errors, storage, records."""
from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
from flask import Flask, current_app
from werkzeug.datastructures import FileStorage

from geovision.checkpoint import Checkpoint
from geovision.imaging import ImageError

from .extensions import db
from .records import Prediction
from .storage import shared, upload_root  # noqa: F401 - upload_root is used through this module too

log = logging.getLogger(__name__)
#: File name extensions the upload forms accept for images.
IMAGE_EXTENSIONS = ["png", "jpg", "jpeg", "tif", "tiff", "gif", "bmp", "webp"]


@dataclass
class Upload:
    """One uploaded file: its client name (display only, never a path) and its bytes."""

    filename: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def client_filename(name: str | None) -> str:
    """Display name of an upload: the last path component of the client's name, at most 200 chars."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return (base or "upload")[:200]


def read_uploads(files: list[FileStorage]) -> list[Upload]:
    """Read the files of a multipart field (those the browser sent with no name are skipped)."""
    return [Upload(client_filename(f.filename), f.read()) for f in files if f is not None and (f.filename or f.content_length)]


def answer_each(uploads: list[Upload], handle: Callable[[Upload], dict]) -> tuple[list[dict], int]:
    """Run ``handle`` on each upload; a bad image gets its own error entry.

    Returns the results in upload order and the number of answered files. Any other error
    (model not ready, queue full, timeout, ...) fails the whole request: the rows recorded for
    its earlier files are deleted first, so the database holds only answers a client received.
    """
    results, answered = [], 0
    for upload in uploads:
        try:
            results.append(handle(upload))
            answered += 1
        except ImageError as exc:
            results.append({"filename": upload.filename,
                            "error": {"code": exc.code, "message": str(exc)}, "http_status": exc.status})
        except Exception:
            forget([pid for r in results for pid in prediction_ids(r)])
            raise
    return results, answered


def prediction_ids(answer: dict) -> list[str]:
    """Every ``prediction_id`` in an answer, its nested answers included (a rocks page answer
    holds the classification's and the similarity search's)."""
    ids = [answer["prediction_id"]] if answer.get("prediction_id") else []
    for value in answer.values():
        if isinstance(value, dict):
            ids += prediction_ids(value)
    return ids


def forget(public_ids: list[str]) -> None:
    """Delete the prediction rows ``public_ids`` (answers that never reached the client)."""
    if not public_ids:
        return
    db.session.rollback()
    db.session.execute(db.delete(Prediction).where(Prediction.public_id.in_(public_ids)))
    db.session.commit()


def storage_dir(public_id: str) -> Path:
    """Folder of one prediction's files (generated id, outside ``static/``)."""
    folder = upload_root() / public_id[:2] / public_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def find_stored(public_id: str, name: str) -> Path | None:
    """Path of a stored result file, or None (``name`` must be a plain file name)."""
    if "/" in name or "\\" in name or name.startswith(".") or "/" in public_id or public_id.startswith("."):
        return None
    folder = upload_root() / public_id[:2] / public_id
    files = shared()
    if not folder.is_dir():   # another front end answered it: copy its whole folder from the store
        files.fetch(folder, folder=True)
    path = folder / name
    return path if files.fetch(path) and path.is_file() else None


def record(task: str, upload, size: tuple[int, int], ckpt: Checkpoint, result: dict,
           timings: dict, public_id: str | None = None) -> Prediction:
    """Write one database row for an answered file and commit it (``upload`` has ``filename`` and
    ``sha256``: an :class:`Upload` or a stored SEG-Y volume); the answer's files, when it has any,
    are published to the shared store first (:mod:`app.storage`)."""
    row = Prediction(task=task, filename=upload.filename, input_sha256=upload.sha256,
                     width=size[0], height=size[1], model_name=ckpt.name, model_version=ckpt.version,
                     result=result, decode_ms=timings["decode_ms"], inference_ms=timings["inference_ms"],
                     total_ms=timings["total_ms"])
    if public_id:
        row.public_id = public_id
        shared().publish(upload_root() / public_id[:2] / public_id)   # files first, then the row
    db.session.add(row)
    db.session.commit()
    return row


def prune_uploads(root: Path, days: int) -> int:
    """Delete prediction folders under ``root`` older than ``days`` days; returns how many."""
    if days <= 0 or not root.is_dir():
        return 0
    cutoff = time.time() - days * 86400
    removed = 0
    for folder in root.glob("*/*"):
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


@click.command("prune-uploads")
@click.option("--days", type=int, help="retention in days (default: UPLOAD_RETENTION_DAYS)")
def prune_command(days: int | None) -> None:
    """Delete stored upload and result files older than the retention period."""
    days = current_app.config["UPLOAD_RETENTION_DAYS"] if days is None else days
    click.echo(f"removed {prune_uploads(upload_root(), days)} prediction folders older than {days} days")


def init_app(app: Flask) -> None:
    app.cli.add_command(prune_command)
    if not app.testing:
        threading.Thread(target=prune_uploads, args=(upload_root(app), app.config["UPLOAD_RETENTION_DAYS"]),
                         name="prune-uploads", daemon=True).start()
