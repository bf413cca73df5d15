"""The gallery of known whales: ranking a query against it, duplicates, building and enrolment.

The gallery (``<GALLERY_FOLDER>/whales``, see :mod:`app.gallery`) holds one row per photo of
a known individual: ``label`` (the individual's id), ``image`` (file name), ``path`` (where
the photo is kept), ``phash`` (256-bit perceptual hash, hex) and ``viewpoint``, with the
``whales`` model's embedding of each photo (the index) and its local features (``ragged``).
The served ranking (:mod:`app.whales.matching`) fuses the local-feature votes with the
embedding's cosine ranking; :func:`rank_gallery` is the embedding's ranking alone, used for
galleries built without local features (``new_whale`` below ``meta.json``'s ``new_whale_threshold``).
"""
from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable
from pathlib import Path

import imagehash
import numpy as np
import torch
from flask import current_app
from PIL import Image, ImageOps
from tqdm import tqdm

from geovision import photoid, retrieval
from geovision.checkpoint import Checkpoint, fingerprint
from geovision.imaging import normalise
from geovision.metrics import NEW_WHALE, insert_new_whale
from geovision.whales import image_folder, partition, prepare_image, rank_individuals, read_split

from ..extensions import engine
from ..gallery import Gallery, GalleryUnavailable, store
from ..storage import shared

TASK = "whales"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".webp"}
SEARCH_DEPTH = 256  #: gallery photos retrieved per query before aggregating per individual


HASH_SIZE = 16  #: pHash of 16x16 = 256 bits (the 64-bit default confuses whales' smooth backs)


THUMBNAIL_SIZE = (256, 256)   #: largest thumbnail of a query or gallery photo on the pages


def thumbnail_jpeg(image: Image.Image) -> bytes:
    """JPEG (quality 85) of ``image`` within :data:`THUMBNAIL_SIZE` pixels."""
    image = image.convert("RGB")
    image.thumbnail(THUMBNAIL_SIZE)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def perceptual_hash(image: Image.Image) -> str:
    """256-bit DCT perceptual hash (``imagehash.phash``, hash_size 16) as 64 hex digits.

    Measured on the beluga photos: JPEG re-encoding (quality 60) with a 3/4 resize moves at
    most 12 bits, while the nearest photo of another encounter is 40 bits or more away; the
    64-bit hash put 84 of the 560 validation queries within 6 bits of another whale.
    """
    return str(imagehash.phash(image.convert("RGB"), hash_size=HASH_SIZE))


def _hash_words(hex_hash: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(hex_hash.rjust(HASH_SIZE * HASH_SIZE // 4, "0")), dtype=">u8").astype(np.uint64)


def hamming_distances(query: str, hashes: np.ndarray) -> np.ndarray:
    """Bit differences (N,) int between a hex pHash and gallery hashes uint64 (N, 4)."""
    return np.bitwise_count(hashes ^ _hash_words(query)[None]).sum(1).astype(int)


def _gallery_hashes(gallery: Gallery) -> np.ndarray:
    if "phash" not in gallery.cache:
        words = [_hash_words(it.get("phash") or "0") for it in gallery.items]
        gallery.cache["phash"] = np.stack(words) if words else np.zeros((0, 4), np.uint64)
    return gallery.cache["phash"]


def photos_by_whale(gallery: Gallery) -> dict[str, list[int]]:
    if "by_whale" not in gallery.cache:
        by: dict[str, list[int]] = {}
        for item in gallery.items:
            by.setdefault(item["label"], []).append(item["id"])
        gallery.cache["by_whale"] = by
    return gallery.cache["by_whale"]


def model_input(image: Image.Image, ckpt: Checkpoint, mirror: bool = False) -> np.ndarray:
    """float32 (3, H, W) normalised model input of a decoded photo, H and W from ``meta.json``
    ``input_shape``; ``mirror`` flips it left-right first (right side views, as in training)."""
    norm = ckpt.meta["normalization"]
    height, width = (int(n) for n in ckpt.meta["input_shape"][1:])
    return normalise(prepare_image(ImageOps.mirror(image) if mirror else image, height, width),
                     norm["mean"], norm["std"])


def rank_gallery(gallery: Gallery, embedding: np.ndarray, threshold: float,
                 duplicate: dict | None = None) -> tuple[list[tuple[str, float]], dict[str, list[int]]]:
    """Five (whale_id, score) predictions with ``new_whale`` inserted, and the gallery photo ids
    of each candidate, most similar first.

    Args:
        embedding: float32 (D,) L2-normalised query embedding.
        threshold: ``new_whale`` threshold on the cosine similarity.
        duplicate: a gallery photo the query duplicates (:func:`find_duplicate`): its individual
            is then ranked first whatever the embedding says (the humpback solutions' use of
            exact duplicates), the others follow.
    """
    n = len(gallery)
    depth = min(n, SEARCH_DEPTH)
    while True:
        scores, ids = retrieval.search(gallery.index, embedding[None].astype(np.float32), depth)
        keep = ids[0] >= 0
        scores, ids = scores[0][keep], ids[0][keep]
        labels = np.array([gallery.items[i]["label"] for i in ids])
        ranked = rank_individuals(scores, labels, limit=6)
        if len(ranked) >= 6 or depth >= n:
            break
        depth = n
    photos: dict[str, list[int]] = {}
    for i, label in zip(ids, labels):
        photos.setdefault(str(label), []).append(int(i))
    if duplicate is None:
        return insert_new_whale(ranked[:5], threshold), photos
    whale = duplicate["whale_id"]
    score = float(gallery.index.reconstruct(int(duplicate["id"])) @ embedding)
    rest = [(w, s) for w, s in ranked if w != whale]
    return [(whale, score)] + insert_new_whale(rest, threshold, k=4), photos


def find_duplicate(gallery: Gallery, phash: str, max_distance: int) -> dict | None:
    """The closest gallery photo within ``max_distance`` bits of pHash, or None."""
    hashes = _gallery_hashes(gallery)
    if not len(hashes):
        return None
    dist = hamming_distances(phash, hashes)
    best = int(dist.argmin())
    if dist[best] > max_distance:
        return None
    item = gallery.items[best]
    return {"image": item["image"], "whale_id": item["label"], "id": item["id"], "distance": int(dist[best])}


# --- building and extending the gallery -------------------------------------------------

def embed_images(images: Iterable[Image.Image], ckpt: Checkpoint, total: int | None = None,
                 desc: str = "describing whale photos", batch_size: int = 64,
                 viewpoints: Iterable[str] | None = None) -> tuple[np.ndarray, list[str], dict[str, list[np.ndarray]]]:
    """(float32 (N, D) L2-normalised embeddings, pHashes, local features) of decoded photos, with a
    progress bar. The local features (:func:`geovision.photoid.extract_features`, right views
    mirrored) are ``{"keypoints": [float32 (M, 3)], "descriptors": [uint8 (M, 128)]}``; a photo's
    viewpoint comes from ``viewpoints`` (``top``/``left``/``right``), else from its shape."""
    embs, hashes, batch = [], [], []
    local: dict[str, list[np.ndarray]] = {"keypoints": [], "descriptors": []}
    views = iter(viewpoints) if viewpoints is not None else None

    def flush():   # through the engine: the local batcher or the Ray deployment
        embs.append(engine.predict(TASK, torch.from_numpy(np.stack(batch))).numpy())
        batch.clear()

    for image in tqdm(images, total=total, desc=desc, unit="photo", mininterval=2):
        view = next(views) if views is not None else photoid.guess_viewpoint(*image.size)
        batch.append(model_input(image, ckpt, mirror=view == "right"))
        hashes.append(perceptual_hash(image))
        feats = photoid.extract_features(image, mirror=view == "right")
        local["keypoints"].append(feats.keypoints)
        local["descriptors"].append(feats.descriptors)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    dim = int(ckpt.meta.get("embedding_dim", 0))
    return (np.concatenate(embs) if embs else np.zeros((0, dim), np.float32)), hashes, local


def _open(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im


def read_train_csv(data: Path, exclude_split: Path | None = None) -> list[dict]:
    """Gallery rows ``{"Image", "Id", "path"}`` of ``DATA/train.csv`` (Kaggle's ``Image,Id``).

    Rows with ``new_whale`` are skipped (they name no individual). ``exclude_split`` (a
    ``train/splits/whales_val.csv``) leaves out its query photos and every photo of its
    held-out (``query_new``) individuals, giving the gallery the validation was scored on.
    Raises FileNotFoundError without ``train.csv``.
    """
    data = Path(data)
    with open(data / "train.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["Id"] != NEW_WHALE]
    if exclude_split:
        rows, _, _ = partition(rows, read_split(exclude_split))
    folder = image_folder(data)
    return [{**r, "path": str((folder / r["Image"]).resolve())} for r in rows]


def read_viewpoints(data: Path) -> dict[str, str]:
    """Image -> viewpoint (``top``/``left``/``right``) of ``DATA/metadata.csv``; empty without it."""
    path = Path(data) / "metadata.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        return {r["Image"]: r["viewpoint"] for r in csv.DictReader(fh)
                if r.get("viewpoint") in photoid.VIEWPOINTS}


def build_gallery(data: Path, exclude_split: Path | None = None) -> int:
    """Describe every photo of ``DATA/train.csv`` (embedding, pHash, local features; viewpoints
    from ``metadata.csv`` when present) and swap in the new whale gallery; returns its size."""
    ckpt = engine.checkpoint(TASK)
    rows = read_train_csv(data, exclude_split)
    if not rows:
        raise GalleryUnavailable(f"no photos of known individuals in {data}/train.csv")
    known = read_viewpoints(data)
    views = []
    for r in rows:
        if r["Image"] not in known:
            with Image.open(r["path"]) as im:
                known[r["Image"]] = photoid.guess_viewpoint(*im.size)
        views.append(known[r["Image"]])
    embs, hashes, local = embed_images((_open(Path(r["path"])) for r in rows), ckpt, total=len(rows),
                                       viewpoints=views)
    items = [{"label": r["Id"], "image": r["Image"], "path": r["path"], "phash": h, "viewpoint": v}
             for r, h, v in zip(rows, hashes, views)]
    return store().replace(TASK, items, embs, ragged=local, model=fingerprint(ckpt))


def enrolled_folder() -> Path:
    """Where enrolled photos are kept: ``WHALES_ENROLLED_FOLDER``, default instance/whales-enrolled,
    or with a shared store (``STORAGE_URL``) ``<GALLERY_FOLDER>/enrolled-whales``, published there."""
    default = Path(current_app.instance_path) / "whales-enrolled"
    if shared().remote:
        default = store().folder / "enrolled-whales"
    folder = Path(current_app.config.get("WHALES_ENROLLED_FOLDER") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def photo_path(item: dict) -> Path:
    """Local path of a gallery row's photo, copied from the shared store when another front end
    enrolled it (photos of ``flask gallery build --data`` must be on a volume every front end mounts)."""
    if item.get("key"):            # enrolled with a shared store: the same key on every front end
        path = shared().local(item["key"])
        shared().fetch(path)
        return path
    return Path(item["path"])


def enrol(whale_id: str, photos: list[tuple[str, Image.Image, bytes | None]], viewpoint: str = "auto") -> int:
    """Add photos of one individual (known or new) to the gallery without retraining.

    Args:
        photos: (display name, decoded image, original bytes or None to keep the image where it is).
            Uploaded bytes are kept under ``WHALES_ENROLLED_FOLDER`` with a generated name.
        viewpoint: ``top``, ``left``, ``right``, or ``auto`` (portrait photos top, others left).
    Returns the new gallery size.
    """
    whale_id = whale_id.strip()
    if not whale_id or whale_id == NEW_WHALE:
        raise ValueError("give the individual's id (--id ID on the command line), not new_whale")
    ckpt = engine.checkpoint(TASK)
    views = [photoid.guess_viewpoint(*im.size) if viewpoint == "auto" else viewpoint for _, im, _ in photos]
    embs, hashes, local = embed_images((im for _, im, _ in photos), ckpt, total=len(photos), viewpoints=views)
    items = []
    for (name, _, data), h, view in zip(photos, hashes, views):
        if data is not None:
            suffix = Path(name).suffix.lower()
            path = enrolled_folder() / f"{uuid.uuid4().hex}{suffix if suffix in IMAGE_SUFFIXES else '.img'}"
            path.write_bytes(data)
        else:
            path = Path(name).resolve()
        item = {"label": whale_id, "image": Path(name).name, "path": str(path), "phash": h, "viewpoint": view}
        if data is not None and shared().remote:
            shared().publish(path)         # raises ValueError for a WHALES_ENROLLED_FOLDER outside the shared folders
            item["key"] = shared().key(path)
        items.append(item)
    return store().append(TASK, items, embs, ragged=local, model=fingerprint(ckpt))
