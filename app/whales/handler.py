"""Whale identification handler: photo -> letterboxed input -> embedding -> 5 individuals or new_whale."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from flask import current_app, url_for
from PIL import Image

from geovision.checkpoint import Checkpoint
from geovision.imaging import decode_image
from geovision.metrics import NEW_WHALE

from ..gallery import store
from ..tasks.handler import Prepared, TaskHandler
from . import gallery as whale_gallery
from .views import bp

PHOTOS_PER_CANDIDATE = 3


class WhalesHandler(TaskHandler):
    """The 5 most likely known individuals of a whale photo, ``new_whale`` when none is close."""

    name = "whales"
    title = "Whale identification"
    blurb = "The 5 most likely known individuals of a whale photo, new_whale when nobody known is close"
    api_action = "identify"
    blueprint = bp
    has_gallery = True
    gallery_label_field = "whale_id"
    gallery_unit = "photos"
    v2_output_specs = [("whale_ids", "BYTES", [-1, 5]), ("scores", "FP32", [-1, 5])]
    result_schema = {
        "predictions": {"type": "array", "minItems": 5, "maxItems": 5, "items": {"type": "object", "properties": {
            "whale_id": {"type": "string", "description": "a known individual, or new_whale"},
            "score": {"type": "number", "description": "cosine similarity of its best gallery photo"}}}},
        "duplicate_of": {"type": "object", "nullable": True, "properties": {
            "image": {"type": "string"}, "whale_id": {"type": "string"}}},
    }
    api_errors = ("gallery_empty",)
    config_defaults = {
        #: Largest pHash (256 bits) Hamming distance at which an upload is a duplicate of a gallery photo.
        "WHALES_DUPLICATE_DISTANCE": int(os.environ.get("WHALES_DUPLICATE_DISTANCE", 16)),
        #: Where photos enrolled through the admin page/API are kept; None = instance/whales-enrolled.
        "WHALES_ENROLLED_FOLDER": os.environ.get("WHALES_ENROLLED_FOLDER"),
    }

    def check_ready(self) -> None:
        super().check_ready()
        store().get(self.name)   # 409 before decoding when there is no gallery

    def preprocess(self, item, ckpt: Checkpoint, with_photos: bool = False,
                   image: Image.Image | None = None) -> Prepared:
        """``image``: the upload already decoded (the page decodes it for its thumbnail)."""
        gallery = store().get(self.name)
        if image is None:
            image = decode_image(item.data, current_app.config["MAX_IMAGE_PIXELS"])
        x = whale_gallery.model_input(image, ckpt)
        return Prepared(torch.from_numpy(x[None]), image.size,
                        {"gallery": gallery, "phash": whale_gallery.perceptual_hash(image)})

    def postprocess(self, prepared: Prepared, outputs: torch.Tensor | None, ckpt: Checkpoint, public_id: str,
                    with_photos: bool = False, image: Image.Image | None = None) -> tuple[dict, dict]:
        """``predictions`` (5 x ``{"whale_id", "score"}``) and ``duplicate_of``; with ``with_photos``
        each known candidate gets ``photo_urls`` (up to 3 gallery photos, most similar first) and
        the duplicate its ``distance`` and ``photo_url``."""
        gallery, phash = prepared.state["gallery"], prepared.state["phash"]
        embedding = outputs[0].float().numpy()
        threshold = float(ckpt.meta["new_whale_threshold"])
        duplicate = whale_gallery.find_duplicate(gallery, phash, current_app.config["WHALES_DUPLICATE_DISTANCE"])
        preds, photos = whale_gallery.rank_gallery(gallery, embedding, threshold, duplicate)
        predictions = [{"whale_id": w, "score": round(float(s), 6)} for w, s in preds]
        public_dup = {"image": duplicate["image"], "whale_id": duplicate["whale_id"]} if duplicate else None
        summary = {"predictions": predictions, "duplicate_of": public_dup, "new_whale_threshold": threshold,
                   "gallery": gallery.version, "phash": phash}
        result = {"predictions": [dict(p) for p in predictions], "duplicate_of": public_dup}
        if with_photos:
            by_whale = whale_gallery.photos_by_whale(gallery)
            for p in result["predictions"]:
                if p["whale_id"] != NEW_WHALE:
                    ids = (photos.get(p["whale_id"]) or by_whale.get(p["whale_id"], []))[:PHOTOS_PER_CANDIDATE]
                    p["photo_urls"] = [url_for("whales.gallery_image", item_id=i) for i in ids]
            if duplicate:
                result["duplicate_of"] = {**public_dup, "distance": duplicate["distance"],
                                          "photo_url": url_for("whales.gallery_image", item_id=duplicate["id"])}
        return result, summary

    def v2_outputs(self, results: list[dict], **options) -> list[tuple[str, str, np.ndarray]]:
        """``whale_ids`` BYTES [N, 5] (``new_whale`` among them) and ``scores`` FP32 [N, 5], best first."""
        ids = np.array([[p["whale_id"].encode() for p in r["predictions"]] for r in results], dtype=object)
        scores = np.array([[p["score"] for p in r["predictions"]] for r in results], np.float32)
        return [("whale_ids", "BYTES", ids), ("scores", "FP32", scores)]

    def history_text(self, summary: dict) -> str:
        top = summary["predictions"][0]
        duplicate = " (duplicate of a gallery photo)" if summary.get("duplicate_of") else ""
        return f"{top['whale_id']} ({top['score']:.3f}){duplicate}"

    def build_gallery(self, data: Path, exclude: Path | None) -> int:
        return whale_gallery.build_gallery(data, exclude)

    def add_to_gallery(self, label: str | None, photos: list[tuple[str, Image.Image, bytes | None]]) -> int:
        return whale_gallery.enrol(label or "", photos)


handler = WhalesHandler()
