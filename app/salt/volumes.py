"""Salt inputs as they arrive: images read into memory, SEG-Y volumes streamed to disk and kept.

A SEG-Y volume is stored as ``<UPLOAD_FOLDER>/segy/<segy_id>/volume.sgy`` with its geometry in
``segy.json``, so that its slices can be segmented later without uploading it again.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from werkzeug.datastructures import FileStorage

from geovision.imaging import ImageError

from ..accounts import anonymous_account, can_see, current_owner_id
from ..storage import shared
from ..uploads import Upload, client_filename, upload_root
from . import segy

_SEGY_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class StoredSegy:
    """A SEG-Y upload kept on disk (``<UPLOAD_FOLDER>/segy/<segy_id>/volume.sgy``)."""

    segy_id: str
    filename: str
    sha256: str
    size_bytes: int

    @property
    def path(self) -> Path:
        return segy_root() / self.segy_id / "volume.sgy"


@dataclass
class Refused:
    """An upload refused before decoding (too large, unreadable SEG-Y): answered with its error."""

    filename: str
    error: ImageError


def segy_root() -> Path:
    return upload_root() / "segy"


def store_segy(file: FileStorage) -> StoredSegy:
    """Stream a SEG-Y upload to disk in 1 MiB chunks (hashing it on the way) and check it opens.

    Raises ImageError: ``segy_too_large`` (413) over ``SEGY_MAX_BYTES``, ``invalid_segy`` when
    segyio cannot read it.
    """
    limit = int(current_app.config["SEGY_MAX_BYTES"])
    owner_id = current_owner_id()
    stored = StoredSegy(uuid.uuid4().hex, client_filename(file.filename), "", 0)
    stored.path.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with open(stored.path, "wb") as out:
        while chunk := file.stream.read(1 << 20):
            size += len(chunk)
            if size > limit:
                out.close()
                shutil.rmtree(stored.path.parent, ignore_errors=True)
                raise ImageError(f"the SEG-Y file is larger than the limit of {limit / 2**20:.0f} MB",
                                 code="segy_too_large", status=413)
            digest.update(chunk)
            out.write(chunk)
    stored.sha256, stored.size_bytes = digest.hexdigest(), size
    known = _by_sha256(stored.sha256, owner_id)
    if known is not None:   # the same volume again: keep one copy, answer with its segy_id
        shutil.rmtree(stored.path.parent, ignore_errors=True)
        return known
    try:
        geometry = segy.geometry(stored.path)
    except (segy.SegyError, ValueError, OverflowError, IndexError, RuntimeError, MemoryError) as exc:
        shutil.rmtree(stored.path.parent, ignore_errors=True)    # a refused upload leaves nothing on disk
        raise ImageError(str(exc) if isinstance(exc, segy.SegyError) else f"unreadable SEG-Y headers ({exc})",
                         code="invalid_segy") from None
    except BaseException:
        shutil.rmtree(stored.path.parent, ignore_errors=True)
        raise
    (stored.path.parent / "segy.json").write_text(json.dumps(
        {"filename": stored.filename, "sha256": stored.sha256, "size_bytes": size, "geometry": geometry,
         "owner_id": owner_id}))
    entry = _index_entry(stored.sha256, owner_id)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(stored.segy_id)
    shared().publish(stored.path.parent)      # the volume first, then its entry in the index
    shared().publish(entry)
    return stored


def _index_entry(sha256: str, owner_id: int) -> Path:
    """The index file naming the volume with these bytes that ``owner_id`` uploaded (one per owner:
    the same bytes from another user become another volume, which only that user sees)."""
    return segy_root() / "by-sha256" / str(owner_id) / sha256


def _by_sha256(sha256: str, owner_id: int) -> StoredSegy | None:
    """The stored volume with these bytes uploaded by ``owner_id``, if one is kept."""
    entry = _index_entry(sha256, owner_id)
    found = load_segy(entry.read_text().strip()) if shared().fetch(entry) and entry.is_file() else None
    return found[0] if found else None


def load_segy(segy_id: str, check_owner: bool = True) -> tuple[StoredSegy, dict] | None:
    """A stored SEG-Y upload and its geometry, or None for an unknown id or (``check_owner``, in a
    request) a volume the requester may not see (:func:`app.accounts.can_see`; volumes stored before
    accounts belong to ``anonymous``)."""
    if not _SEGY_ID.match(segy_id or ""):
        return None
    info_path = segy_root() / segy_id / "segy.json"
    if not info_path.is_file() and shared().fetch(info_path):
        shared().fetch(info_path.parent / "volume.sgy")   # stored by another front end
    if not info_path.is_file():
        return None
    info = json.loads(info_path.read_text())
    if check_owner and not can_see(info.get("owner_id") or anonymous_account().id):
        return None
    return StoredSegy(segy_id, info["filename"], info["sha256"], info["size_bytes"]), info["geometry"]


def read_salt_files(files: list[FileStorage], segy_id: str | None = None) -> list[Upload | StoredSegy | Refused]:
    """The files of a salt request: images read into memory (each at most ``MAX_CONTENT_LENGTH``
    bytes), SEG-Y files (``.sgy``/``.segy``) streamed to disk (at most ``SEGY_MAX_BYTES``), and
    the volume ``segy_id`` already stored (no upload needed)."""
    image_limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
    out: list[Upload | StoredSegy | Refused] = []
    if segy_id:
        found = load_segy(segy_id.strip())
        out.append(found[0] if found else Refused(
            "segy_id", ImageError(f"no stored SEG-Y volume {segy_id.strip()!r}; upload the file", code="invalid_segy")))
    for f in files:
        if f is None or not (f.filename or f.content_length):
            continue
        name = client_filename(f.filename)
        if segy.is_segy_name(name):
            try:
                out.append(store_segy(f))
            except ImageError as exc:
                out.append(Refused(name, exc))
            continue
        data = f.read(image_limit + 1) if image_limit else f.read()
        if image_limit and len(data) > image_limit:
            out.append(Refused(name, ImageError(f"the upload is larger than the limit of {image_limit / 2**20:.0f} MB",
                                                code="payload_too_large", status=413)))
        else:
            out.append(Upload(name, data))
    return out
