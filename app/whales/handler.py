"""Whale identification handler: photo -> local features and embedding -> 5 individuals or new_whale.

The served ranking (``meta.json`` ``photoid``) is the local-feature votes (upright RootSIFT, LNBNN,
RANSAC re-rank) fused with the fine-tuned embedding's cosine ranking when ``embedding_weight`` is
set; a gallery built without local features falls back to the embedding's ranking alone.
"""
from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import torch
from flask import current_app, url_for
from PIL import Image

from geovision import photoid
from geovision.checkpoint import Checkpoint, fingerprint
from geovision.imaging import decode_image
from geovision.metrics import NEW_WHALE
from geovision.photoid_figures import draw_matches

from ..gallery import check_model, store
from ..outcome import Outcome
from ..tasks.handler import Prepared, TaskHandler
from ..tasks.protocols import GalleryTask
from . import (
    decisions,  # noqa: F401  (registers the admin's confirm/new route on bp)
    matching,
)
from . import gallery as whale_gallery
from .options import WhalesOptions
from .parts import WhalesApi, WhalesPage

PHOTOS_PER_CANDIDATE = 3

class WhalesHandler(TaskHandler, GalleryTask):
    """The 5 most likely known individuals of a whale photo, ``new_whale`` when none is close."""

    name = "whales"
    api = WhalesApi()
    page = WhalesPage()
    options_model = WhalesOptions
    gallery_label_field = "whale_id"
    gallery_unit = "photos"
    config_defaults = {
        #: Largest pHash (256 bits) Hamming distance at which an upload is a duplicate of a gallery photo.
        "WHALES_DUPLICATE_DISTANCE": int(os.environ.get("WHALES_DUPLICATE_DISTANCE", 16)),
        #: Where photos enrolled through the admin page/API are kept; None = instance/whales-enrolled.
        "WHALES_ENROLLED_FOLDER": os.environ.get("WHALES_ENROLLED_FOLDER"),
    }

    def check_ready(self) -> None:
        super().check_ready()
        store().get(self.name)   # 409 before decoding when there is no gallery

    def preprocess(self, item, ckpt: Checkpoint, with_photos: bool = False, **options) -> Prepared:
        """The decoded photo's model input rows (one per mirror tried) and its pHash."""
        gallery = store().get(self.name)
        image = decode_image(item.data, current_app.config["MAX_IMAGE_PIXELS"])
        viewpoint = options.get("viewpoint", "auto")
        if viewpoint == "auto":   # a landscape photo is a side view of either side: both are embedded
            mirrors = [False] if photoid.guess_viewpoint(*image.size) == "top" else [False, True]
        else:
            mirrors = [viewpoint == "right"]
        x = np.stack([whale_gallery.model_input(image, ckpt, mirror=m) for m in mirrors])
        return Prepared(torch.from_numpy(x), image.size,
                        {"gallery": gallery, "phash": whale_gallery.perceptual_hash(image), "image": image,
                         "data": item.data, "filename": item.filename})

    def postprocess(self, prepared: Prepared, outputs: torch.Tensor | None, ckpt: Checkpoint,
                    with_photos: bool = False, k: int = 20,
                    viewpoint: str = "auto") -> Outcome:
        """``predictions`` (5 x ``{"whale_id", "score", "inliers"}``), ``shortlist`` (k), ``viewpoint``
        and ``duplicate_of``. With ``with_photos`` (the page) each known candidate gets ``photo_ids``
        (:meth:`links` makes them ``photo_urls``) and ``match_png`` (the query beside its best verified
        photo, inlier matches drawn), and the answer a ``thumbnail`` of the query (JPEG data URL).
        The query photo is kept with the answer (artefact ``query.*``)
        for the admin's confirm/new flows."""
        gallery, phash = prepared.state["gallery"], prepared.state["phash"]
        duplicate = whale_gallery.find_duplicate(gallery, phash, current_app.config["WHALES_DUPLICATE_DISTANCE"])
        suffix = Path(prepared.state["filename"] or "").suffix.lower()
        artefacts = {f"query{suffix if suffix in whale_gallery.IMAGE_SUFFIXES else '.img'}": prepared.state["data"]}
        if matching.has_features(gallery):
            params = ckpt.meta.get("photoid", {})
            embeddings = None
            if float(params.get("embedding_weight", 0)):   # the votes are fused with this model's embedding
                check_model(gallery, fingerprint(ckpt), self.name)
                embeddings = outputs.float().numpy()
            found = matching.identify(gallery, prepared.state["image"], params, k, viewpoint, embeddings)
            predictions = found.predictions(duplicate["whale_id"] if duplicate else None)
            shortlist, group, threshold = found.shortlist(k), found.group, found.threshold
            photos = {w: [row] for w, (row, _, _) in found.best.items()}
        else:   # a gallery built before local features: the CNN embedding's cosine ranking
            check_model(gallery, fingerprint(ckpt), self.name)
            found, group, threshold = None, "all", float(ckpt.meta["new_whale_threshold"])
            preds, photos = whale_gallery.rank_gallery(gallery, outputs[0].float().numpy(), threshold, duplicate)
            predictions = [{"whale_id": w, "score": round(float(s), 6), "inliers": None} for w, s in preds]
            shortlist = [p for p in predictions if p["whale_id"] != NEW_WHALE]
        public_dup = {"image": duplicate["image"], "whale_id": duplicate["whale_id"]} if duplicate else None
        summary = {"predictions": predictions, "duplicate_of": public_dup, "new_whale_threshold": threshold,
                   "gallery": gallery.version, "phash": phash, "viewpoint": group}
        result = {"predictions": [dict(p) for p in predictions], "shortlist": shortlist, "viewpoint": group,
                  "duplicate_of": public_dup}
        if with_photos:
            self._add_photos(result, gallery, photos, found, duplicate, prepared.state["image"], group)
            thumbnail = whale_gallery.thumbnail_jpeg(prepared.state["image"])
            result["thumbnail"] = "data:image/jpeg;base64," + base64.b64encode(thumbnail).decode()
        return Outcome(result, summary, artefacts)

    def links(self, answer: dict) -> dict:
        """``photo_ids`` of the candidates and of the duplicate become thumbnail URLs (``photo_urls``,
        ``duplicate_of.photo_url``)."""
        def url(item_id: int) -> str:
            return url_for("whales.gallery_image", item_id=item_id)

        predictions = [{k: v for k, v in p.items() if k != "photo_ids"}
                       | ({"photo_urls": [url(i) for i in p["photo_ids"]]} if "photo_ids" in p else {})
                       for p in answer["predictions"]]
        duplicate = answer.get("duplicate_of")
        if duplicate and "photo_id" in duplicate:
            duplicate = {k: v for k, v in duplicate.items() if k != "photo_id"} | {"photo_url": url(duplicate["photo_id"])}
        return {**answer, "predictions": predictions, "duplicate_of": duplicate}

    def _add_photos(self, result: dict, gallery, photos: dict, found, duplicate: dict | None, image,
                    group: str = "all") -> None:
        """Each known candidate's ``photo_ids``: its gallery photos of the query's viewpoint ``group``
        only (``top``/``side``; ``all``: any), the verified one first; none of that viewpoint: none."""
        by_whale = whale_gallery.photos_by_whale(gallery)

        def same_view(row: int) -> bool:
            return group == "all" or photoid.viewpoint_group(gallery.items[row].get("viewpoint") or "top") == group
        for p in result["predictions"]:
            if p["whale_id"] == NEW_WHALE:
                continue
            ids = list(dict.fromkeys(photos.get(p["whale_id"], []) + by_whale.get(p["whale_id"], [])))
            p["photo_ids"] = [int(i) for i in ids if same_view(int(i))][:PHOTOS_PER_CANDIDATE]
            if found is not None and p["whale_id"] in found.best:
                row, check, variant = found.best[p["whale_id"]]
                item = gallery.items[row]
                try:
                    with Image.open(whale_gallery.photo_path(item)) as photo:
                        png = draw_matches(image, photo, check, query_mirror=found.mirrored[variant],
                            photo_mirror=item.get("viewpoint") == "right")
                    p["match_png"] = "data:image/png;base64," + base64.b64encode(png).decode()
                except OSError:
                    pass
        if duplicate:
            result["duplicate_of"] = {**result["duplicate_of"], "distance": duplicate["distance"],
                                      "photo_id": int(duplicate["id"])}

    def build_gallery(self, data: Path, exclude: Path | None) -> int:
        return whale_gallery.build_gallery(data, exclude)

    def add_to_gallery(self, label: str | None, photos: list[tuple[str, Image.Image, bytes | None]]) -> int:
        return whale_gallery.enrol(label or "", photos)


handler = WhalesHandler()
