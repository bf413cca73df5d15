"""Shared files: the local folders a front end works in, mirrored to an object store when scaled out.

``UPLOAD_FOLDER`` (prediction files, SEG-Y volumes, job inputs) and ``GALLERY_FOLDER`` (galleries)
are local working folders. Without ``STORAGE_URL`` they are the store: one machine, or several
front ends sharing one POSIX volume (NFS, EFS). With ``STORAGE_URL`` (an fsspec URL such as
``s3://bucket/geovision``; ``STORAGE_OPTIONS`` is a JSON object of filesystem arguments, e.g.
``{"endpoint_url": "http://minio:9000"}`` for an S3-compatible server) each front end's folders
become a cache of the store:

* write-through: a file or folder is written locally, then :meth:`SharedFiles.publish` copies it
  to the same key under the store (``uploads/<id[:2]>/<id>/mask.png``, ``gallery/<version>/...``);
* read-through: :meth:`SharedFiles.fetch` copies a key the front end lacks from the store before
  it is read, so any front end answers for a file that another one wrote.

The object store client is `fsspec <https://filesystem-spec.readthedocs.io>`_ (``s3fs`` for S3);
the store never holds half a folder that a reader trusts: galleries publish their version folder
first and the pointer object (``gallery/<task>.current``) last.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path

from flask import Flask, current_app

log = logging.getLogger(__name__)


class SharedFiles:
    """The local roots (name -> folder) and, optionally, the object store they mirror.

    Args:
        roots: key prefix -> local folder, e.g. ``{"uploads": Path(...), "gallery": Path(...)}``.
        url: fsspec URL of the store, or None/"" for local folders only.
        options: keyword arguments of the fsspec filesystem (``endpoint_url``, ``key``, ...).
    Raises:
        ValueError: when the URL's protocol has no installed fsspec implementation.
    """

    def __init__(self, roots: dict[str, Path], url: str | None = None, options: dict | None = None):
        self.roots = {name: Path(folder) for name, folder in roots.items()}
        self.url = url or ""
        self.fs, self.base = None, ""
        self._checked: tuple[float, str | None] = (-1e9, None)
        if self.url:
            from fsspec.core import url_to_fs

            try:
                self.fs, self.base = url_to_fs(self.url, **(options or {}))
            except (ImportError, ValueError) as exc:
                raise ValueError(f"STORAGE_URL {self.url!r}: {exc}") from exc
            self.base = self.base.rstrip("/")

    @property
    def remote(self) -> bool:
        """True when an object store is configured (files must be published and fetched)."""
        return self.fs is not None

    def key(self, path: Path) -> str:
        """Store key of a local path under one of the roots (``uploads/ab/abc.../mask.png``).

        Raises ValueError for a path outside every root."""
        path = Path(path).absolute()
        for name, root in self.roots.items():
            try:
                rel = path.relative_to(root.absolute())
            except ValueError:
                continue
            return f"{name}/{rel.as_posix()}" if str(rel) != "." else name
        raise ValueError(f"{path} is not under a shared folder ({', '.join(map(str, self.roots.values()))})")

    def _remote(self, key: str) -> str:
        return f"{self.base}/{key}" if self.base else key

    def local(self, key: str) -> Path:
        """Local path of a store key."""
        name, _, rel = key.partition("/")
        return self.roots[name] / rel if rel else self.roots[name]

    def publish(self, path: Path) -> None:
        """Copy a local file, or every file of a local folder, to the store (no-op without one)."""
        if not self.remote or not Path(path).exists():
            return
        path = Path(path)
        target = self._remote(self.key(path))
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                self.fs.put_file(str(file), f"{target}/{file.relative_to(path).as_posix()}")
        else:
            self.fs.put_file(str(path), target)

    def fetch(self, path: Path, folder: bool = False) -> bool:
        """Make sure the local file (or with ``folder``, every file of the folder) at ``path`` is
        here, copying it from the store when missing; returns whether it exists locally now."""
        path = Path(path)
        if not self.remote or (path.is_file() if not folder else path.is_dir()):
            return path.exists()
        source = self._remote(self.key(path))
        try:
            if folder:
                self.fs.invalidate_cache(source)    # a listing cached earlier may miss new objects
                names = [n for n in self.fs.find(source) if not n.endswith("/")]
                for name in names:   # fsspec lists full object paths: ``<source>/<relative path>``
                    self._download(name, path / name[len(source):].lstrip("/"))
                return bool(names)
            self._download(source, path)
        except FileNotFoundError:
            return False
        return path.exists()

    def _download(self, source: str, target: Path) -> None:
        """Copy one object to ``target`` through a temporary name (readers never see half a file)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}"
        self.fs.get_file(source, str(tmp))
        os.replace(tmp, target)

    def read_text(self, key: str) -> str | None:
        """Text of a small object in the store (None when absent or without a store)."""
        if not self.remote:
            return None
        try:
            return self.fs.cat_file(self._remote(key)).decode()
        except FileNotFoundError:
            return None

    def write_text(self, key: str, text: str) -> None:
        """Write a small object to the store (one PUT: readers see the old or the new text)."""
        if self.remote:
            self.fs.pipe_file(self._remote(key), text.encode())

    def problem(self, cache_s: float = 10.0) -> str | None:
        """Why the store cannot be used now (None when it answers or there is none); checked at
        most every ``cache_s`` seconds (``/api/v1/ready`` asks on every probe)."""
        if not self.remote:
            return None
        now = time.monotonic()
        if now - self._checked[0] >= cache_s:
            try:
                self.fs.ls(self.base.split("/", 1)[0], detail=False, refresh=True)   # the bucket answers
                self._checked = (now, None)
            except Exception as exc:  # noqa: BLE001 - any client error means "not usable", with its text
                self._checked = (now, f"{type(exc).__name__}: {exc}"[:300])
        return self._checked[1]

    def prune(self, root: str, cutoff: float) -> int:
        """Delete the store's folders two levels under ``root`` (``uploads/<ab>/<id>``, as
        :func:`app.uploads.prune_uploads` walks the local ones) whose newest object is older than
        ``cutoff`` (Unix time); returns how many. No-op without a store."""
        if not self.remote:
            return 0
        base, newest = self._remote(root), {}
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return 0
        for name, info in found.items():
            parts = name[len(base):].strip("/").split("/")
            if len(parts) >= 3:
                folder = "/".join(parts[:2])
                newest[folder] = max(newest.get(folder, 0.0), _modified(info))
        old = sorted(f for f, t in newest.items() if t < cutoff)
        for folder in old:
            self.fs.rm(f"{base}/{folder}", recursive=True)
        return len(old)

    def remove(self, path: Path) -> None:
        """Delete the store's copy of a local file or folder (no-op without a store)."""
        if not self.remote:
            return
        try:
            self.fs.rm(self._remote(self.key(path)), recursive=True)
        except FileNotFoundError:
            pass


def _modified(info: dict) -> float:
    """Unix time of an fsspec ``info`` entry (S3: ``LastModified``; local and others: ``mtime``)."""
    value = info.get("LastModified", info.get("mtime", info.get("created", 0.0)))
    return value.timestamp() if hasattr(value, "timestamp") else float(value or 0.0)


def upload_root(app: Flask | None = None) -> Path:
    """The folder holding every prediction's files (``UPLOAD_FOLDER``, default instance/uploads)."""
    app = app or current_app
    return Path(app.config.get("UPLOAD_FOLDER") or Path(app.instance_path) / "uploads")


def gallery_folder(app: Flask | None = None) -> Path:
    """The local gallery folder (``GALLERY_FOLDER``, default instance/gallery)."""
    app = app or current_app
    return Path(app.config.get("GALLERY_FOLDER") or Path(app.instance_path) / "gallery")


def shared() -> SharedFiles:
    """The shared files of the current app."""
    return current_app.extensions["shared_files"]


def init_app(app: Flask) -> None:
    options = app.config.get("STORAGE_OPTIONS") or {}
    if isinstance(options, str):
        options = json.loads(options)
    files = SharedFiles({"uploads": upload_root(app), "gallery": gallery_folder(app)},
                        app.config.get("STORAGE_URL"), options)
    if files.remote:
        log.info("shared files in %s (local cache %s)", files.url, ", ".join(map(str, files.roots.values())))
    app.extensions["shared_files"] = files
