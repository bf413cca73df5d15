"""Galleries of reference images (rock similarity, known whales): build, add, load, search.

A gallery lives in ``<instance>/gallery/<task>``, a link to a versioned folder with ``index.faiss``
(exact inner product on L2-normalised embeddings) and ``items.json`` (id, label, source path and
task fields per row); similarity adds ``pixels.npy`` (uint8 thumbnails, the seed's raw-pixel
vectors) and ``kmeans.npz``, whales ``ragged.npz`` (each photo's local features). Build writes a new
folder and swaps the link atomically (``os.replace``): a running server never sees half a gallery.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
from filelock import FileLock

from geovision import retrieval

log = logging.getLogger(__name__)


class GalleryUnavailable(RuntimeError):
    """No gallery has been built for the task, it is empty, or there is nothing to build it from."""

    code = "gallery_empty"   #: the API's error code (409)


class GalleryStale(GalleryUnavailable):
    """The gallery's embeddings come from another model than the one served (it was retrained)."""

    code = "gallery_stale"


def check_model(gallery: Gallery, model: dict, task: str) -> None:
    """Raise :class:`GalleryStale` when ``gallery`` was embedded by another model than ``model``
    (:func:`geovision.checkpoint.fingerprint`); galleries built before models were recorded pass."""
    if gallery.model and gallery.model.get("sha256") != model["sha256"]:
        raise GalleryStale(f"the {task} gallery was embedded by {gallery.model.get('name')} "
                           f"{gallery.model.get('version')}, not by the served {model['name']} {model['version']}: "
                           f"rebuild it with `flask gallery build {task} --data DIR`")


def gallery_lock(root: Path) -> FileLock:
    """The inter-process lock serialising changes of the gallery at ``root``."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(root.parent / f".{root.name}.lock"))


@dataclass
class Gallery:
    """A loaded gallery (rows are aligned across ``items``, ``index`` and ``pixels``)."""

    items: list[dict]
    index: faiss.Index
    pixels: np.ndarray | None
    kmeans: dict | None
    version: str
    #: the model that embedded the rows (``name``, ``version``, ``sha256``), None when not recorded
    model: dict | None = None
    #: name -> one array per row (e.g. the whales' keypoints and descriptors), or empty
    ragged: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False)
    _pixel_index: faiss.Index | None = field(default=None, repr=False)
    #: per-version derived data of a task (e.g. the whales' hash array), dropped with the version
    cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    def search(self, method: str, k: int, embedding: np.ndarray | None = None,
               pixels: np.ndarray | None = None) -> list[dict]:
        """Top-``k`` matches of one query: ``[{"id", "label", "score"}]``, best first (the embedding
        search adds ``percentile`` and ``angle_deg``: :func:`geovision.retrieval.calibrated`).

        Args:
            method: ``embedding`` (needs ``embedding`` (D,) L2-normalised), ``pixels`` or
                ``kmeans`` (need ``pixels`` uint8 (H, W, 3) at the gallery's thumbnail size).
        """
        if method == "embedding":
            scores, ids = retrieval.search(self.index, embedding[None], k)
            if "neighbour_scores" not in self.cache:
                self.cache["neighbour_scores"] = retrieval.neighbour_scores(self.index)
            extra = retrieval.calibrated(scores[0], self.cache["neighbour_scores"])
        else:
            if self.pixels is None:
                raise GalleryUnavailable("this gallery keeps no pixels: only the embedding search is available")
            query = retrieval.pixel_vectors(pixels[None])
            if method == "pixels":
                if self._pixel_index is None:
                    self._pixel_index = retrieval.flat_index(retrieval.pixel_vectors(self.pixels), "l2")
                dist, ids = retrieval.search(self._pixel_index, query, k)
                scores = retrieval.l2_to_score(dist, query.shape[1])
            elif method == "kmeans":
                scores, ids = retrieval.kmeans_search(self.kmeans["centroids"], self.kmeans["assign"],
                                                      self.kmeans["dist"], query, k)
            else:
                raise ValueError(f"unknown method {method!r}; use one of {retrieval.METHODS}")
            extra = [{}] * len(scores[0])
        return [{**self.items[i], "score": round(float(s), 6), **e} for s, i, e in zip(scores[0], ids[0], extra) if i >= 0]


def write_gallery(root: Path, items: list[dict], embeddings: np.ndarray, pixels: np.ndarray | None = None,
                  n_clusters: int = 6, ragged: dict[str, list[np.ndarray]] | None = None,
                  model: dict | None = None) -> Path:
    """Write a complete gallery folder beside ``root`` (the link path, e.g. ``instance/gallery/similarity``)
    and point ``root`` at it atomically (callers hold :func:`gallery_lock`); returns the new folder.

    ``items``: one dict per row with ``label`` and ``path`` (``id`` set to the row number); ``embeddings``
    float32 (N, D), L2-normalised; ``pixels`` uint8 (N, H, W, 3) or None (embedding search only);
    ``ragged``: name -> one array per row (``ragged.npz``: concatenation and row offsets); ``model``:
    the embedding model's fingerprint (``model.json``)."""
    if len(items) != len(embeddings) or (pixels is not None and len(pixels) != len(items)):
        raise ValueError("items, embeddings and pixels must have the same length")
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    folder = root.parent / f"{root.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    for i, item in enumerate(items):
        item["id"] = i
    faiss.write_index(retrieval.flat_index(embeddings, "ip"), str(folder / "index.faiss"))
    (folder / "items.json").write_text(json.dumps(items))
    if model:
        (folder / "model.json").write_text(json.dumps(model))
    if pixels is not None:
        _write_pixels(folder, pixels, n_clusters)
    if ragged:
        retrieval.save_ragged(folder / "ragged.npz", ragged, len(items))
    tmp_link = root.parent / f".{root.name}.{uuid.uuid4().hex}"
    os.symlink(folder.name, tmp_link)
    os.replace(tmp_link, root)
    _prune_versions(root, keep={folder.name})
    return folder


def _prune_versions(root: Path, keep: set[str], previous: int = 1) -> None:
    """Delete old version folders of ``root`` but the ``previous`` newest ones before ``keep``."""
    versions = sorted((p for p in root.parent.glob(f"{root.name}-*") if p.is_dir() and p.name not in keep),
                      key=lambda p: p.name, reverse=True)
    for old in versions[previous:]:
        shutil.rmtree(old, ignore_errors=True)


def _write_pixels(folder: Path, pixels: np.ndarray, n_clusters: int) -> None:
    np.save(folder / "pixels.npy", pixels)
    if len(pixels) >= n_clusters:
        centroids, assign, dist = retrieval.fit_kmeans(retrieval.pixel_vectors(pixels), n_clusters)
    else:
        centroids, assign, dist = retrieval.pixel_vectors(pixels), np.arange(len(pixels)), np.zeros(len(pixels), np.float32)
    np.savez(folder / "kmeans.npz", centroids=centroids, assign=assign, dist=dist)


def append_to_gallery(root: Path, items: list[dict], embeddings: np.ndarray, pixels: np.ndarray | None = None,
                      ragged: dict[str, list[np.ndarray]] | None = None, model: dict | None = None) -> int:
    """Add rows to the gallery at ``root`` (creating it) without re-embedding; returns its new size.

    The read-modify-swap holds :func:`gallery_lock`, so concurrent appends never lose rows.
    Raises :class:`GalleryStale` when ``model`` is not the model that embedded the gallery.
    """
    with gallery_lock(root):
        return _append_locked(Path(root), items, embeddings, pixels, ragged, model)


def _append_locked(root: Path, items: list[dict], embeddings: np.ndarray, pixels: np.ndarray | None,
                   ragged: dict[str, list[np.ndarray]] | None, model: dict | None = None) -> int:
    if (root / "items.json").exists():
        old = read_gallery(root)
        if model:
            check_model(old, model, root.name)
        model = model or old.model
        items = old.items + items
        embeddings = np.concatenate([old.index.reconstruct_n(0, old.index.ntotal), embeddings])
        if old.pixels is not None and pixels is not None:
            pixels = np.concatenate([old.pixels, pixels])
        if old.ragged and ragged:
            ragged = {k: old.ragged[k] + list(v) for k, v in ragged.items() if k in old.ragged}
        elif old.ragged or ragged:
            ragged = None   # rows without features cannot be mixed in: the task falls back to its embedding
    write_gallery(root, items, embeddings, pixels, ragged=ragged, model=model)
    return len(items)


def read_gallery(root: Path) -> Gallery:
    """Load the gallery version that ``root`` points to now (the link is resolved once, so every
    file comes from that version); raises GalleryUnavailable when absent or empty."""
    root = Path(root)
    folder = root.resolve()
    if not (folder / "items.json").exists():
        raise GalleryUnavailable("no gallery has been built: run `flask gallery build`")
    items = json.loads((folder / "items.json").read_text())
    if not items:
        raise GalleryUnavailable("the gallery is empty: add images with `flask gallery add`")
    pixels, kmeans = None, None
    if (folder / "pixels.npy").exists():
        pixels = np.load(folder / "pixels.npy")
        km = np.load(folder / "kmeans.npz")
        kmeans = {k: km[k] for k in ("centroids", "assign", "dist")}
    model = json.loads((folder / "model.json").read_text()) if (folder / "model.json").exists() else None
    return Gallery(items=items, index=faiss.read_index(str(folder / "index.faiss")), pixels=pixels,
                   kmeans=kmeans, version=folder.name, model=model, ragged=retrieval.load_ragged(folder / "ragged.npz"))


class GalleryStore:
    """Per-app cache of loaded galleries, reloaded when the link points to a new version.

    With an object store (:mod:`app.storage`), the store's pointer ``gallery/<task>.current`` names
    the current version: it is read at most every ``poll_s`` seconds, a new version's folder is
    copied into the local folder and the local link moved to it, so every front end serves the
    gallery that any of them built or extended.
    """

    def __init__(self, folder: Path, files=None, poll_s: float = 5.0):
        self.folder = Path(folder)
        self.files = files            #: :class:`app.storage.SharedFiles`, or None (local only)
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._cache: dict[str, Gallery] = {}
        self._polled: dict[str, float] = {}

    def get(self, task: str) -> Gallery:
        """The current gallery of ``task``; raises GalleryUnavailable."""
        self.sync(task)
        folder = (self.folder / task).resolve()   # one version for the whole read
        with self._lock:
            cached = self._cache.get(task)
            if cached is None or cached.version != folder.name:
                self._cache[task] = read_gallery(folder)
            return self._cache[task]

    def sync(self, task: str, force: bool = False) -> None:
        """Point the local link of ``task`` at the store's current version (no-op without a store,
        or when polled less than ``poll_s`` seconds ago unless ``force``)."""
        if self.files is None or not self.files.remote:
            return
        now = time.monotonic()
        if not force and now - self._polled.get(task, -1e9) < self.poll_s:
            return
        self._polled[task] = now
        version = (self.files.read_text(f"gallery/{task}.current") or "").strip()
        link = self.folder / task
        if not version or (link.is_symlink() and os.readlink(link) == version):
            return
        if not self.files.fetch(self.folder / version, folder=True):
            log.warning("gallery %s: version %s is named by the store but has no files", task, version)
            return
        tmp_link = self.folder / f".{task}.{uuid.uuid4().hex}"
        os.symlink(version, tmp_link)
        os.replace(tmp_link, link)
        log.info("gallery %s: now version %s from the shared store", task, version)

    def replace(self, task: str, items: list[dict], embeddings: np.ndarray, pixels: np.ndarray | None = None,
                ragged: dict[str, list[np.ndarray]] | None = None, model: dict | None = None) -> int:
        """:func:`write_gallery` of ``task`` under :func:`gallery_lock` (a rebuild never interleaves
        with an append), then published to the store; returns the size."""
        with gallery_lock(self.folder / task):
            write_gallery(self.folder / task, items, embeddings, pixels, ragged=ragged, model=model)
            self._publish(task)
        return len(items)

    def append(self, task: str, items: list[dict], embeddings: np.ndarray, pixels: np.ndarray | None = None,
               ragged: dict[str, list[np.ndarray]] | None = None, model: dict | None = None) -> int:
        """:func:`append_to_gallery` of ``task`` on the store's current version, then published.

        Appends are serialised per machine by :func:`gallery_lock`; front ends on several machines
        should leave enrolment to one of them (the admin pages) or rebuild."""
        with gallery_lock(self.folder / task):
            self.sync(task, force=True)
            size = _append_locked(self.folder / task, items, embeddings, pixels, ragged, model)
            self._publish(task)
        return size

    def _publish(self, task: str) -> None:
        if self.files is None or not self.files.remote:
            return
        version = os.readlink(self.folder / task)
        self.files.publish(self.folder / version)
        self.files.write_text(f"gallery/{task}.current", version + "\n")   # last: readers see whole versions


def store() -> GalleryStore:
    """The gallery store of the current app (``GALLERY_FOLDER``, default instance/gallery)."""
    from flask import current_app

    return current_app.extensions["galleries"]


def init_app(app) -> None:
    from .storage import gallery_folder

    app.extensions["galleries"] = GalleryStore(gallery_folder(app), app.extensions.get("shared_files"),
                                               float(app.config.get("GALLERY_POLL_S", 5.0)))
