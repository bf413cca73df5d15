"""Upload handling shared by every task: reading files, finding stored result files, pruning old ones."""
from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click
from flask import Flask, current_app
from werkzeug.datastructures import FileStorage

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


def prune_uploads(root: Path, days: int, files=None) -> int:
    """Delete prediction folders under ``root`` older than ``days`` days, and with ``files`` (the
    app's :class:`app.storage.SharedFiles`) their copies in the object store too (any front end's);
    returns how many local folders plus store folders went."""
    if days <= 0:
        return 0
    cutoff = time.time() - days * 86400
    removed = files.prune("uploads", cutoff) if files is not None else 0
    if not root.is_dir():
        return removed
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
    click.echo(f"removed {prune_uploads(upload_root(), days, shared())} prediction folders older than {days} days")


def init_app(app: Flask) -> None:
    app.cli.add_command(prune_command)
    if not app.testing:
        threading.Thread(target=prune_uploads, args=(upload_root(app), app.config["UPLOAD_RETENTION_DAYS"],
                                                     app.extensions.get("shared_files")),
                         name="prune-uploads", daemon=True).start()
