"""Rock classification handler: photo -> 28x28 RGB input -> class probabilities (and, for the rocks
page, the similarity search from the same forward pass)."""
from __future__ import annotations

import numpy as np
import torch
from flask import current_app

from geovision.checkpoint import Checkpoint, fingerprint
from geovision.imaging import decode_image, rgb_model_input

from ..extensions import engine
from ..gallery import GalleryUnavailable, check_model, store
from ..gallery_search import check_thumbnail, search, with_image_urls
from ..outcome import Outcome
from ..tasks.handler import Prepared, TaskHandler
from .parts import RocksApi, RocksPage


class RocksHandler(TaskHandler):
    """Rock type (andesite, gneiss, marble, quartzite, rhyolite, schist) with its probabilities."""

    name = "rocks"
    uses = ("similarity",)   # the page's similar rocks: the similarity gallery, searched with this pass's embedding
    api = RocksApi()
    page = RocksPage()

    def preprocess(self, item, ckpt: Checkpoint, similar: dict | None = None) -> Prepared:
        image = decode_image(item.data, current_app.config["MAX_IMAGE_PIXELS"])
        thumb, x = rgb_model_input(image, ckpt.meta)
        return Prepared(torch.from_numpy(x[None]), image.size, {"thumb": thumb})

    def postprocess(self, prepared: Prepared, outputs: torch.Tensor | None, ckpt: Checkpoint,
                    similar: dict | None = None) -> Outcome:
        """``label`` and ``probabilities``; with ``similar`` (``{"k", "method"}``, the rocks page) also
        ``similar`` (the similarity gallery's answer) or ``similar_error`` when this checkpoint's
        output carries the served similarity model's embedding (``meta.json`` ``embedding_of``)."""
        row = outputs[0].float().numpy()
        labels = ckpt.meta["labels"]
        probs = row[:len(labels)]
        probabilities = {lab: round(float(p), 6) for lab, p in zip(labels, probs)}
        result = {"label": labels[int(probs.argmax())], "probabilities": probabilities}
        outcome = Outcome(result, dict(result))
        if similar is not None:
            self._search(outcome, row, ckpt, prepared.state["thumb"], **similar)
        return outcome

    def _search(self, outcome: Outcome, row: np.ndarray, ckpt: Checkpoint, thumb: np.ndarray, k: int = 10,
                method: str = "embedding") -> None:
        """The similarity search from this forward pass's embedding columns; nothing when they are not
        the served similarity model's (an older checkpoint: the page runs the similarity task)."""
        start, end = ckpt.meta.get("embedding_columns") or (0, 0)
        similarity = self.dependency("similarity")
        served = engine.state.checkpoints.get(similarity.model_task)
        if not end or served is None or (ckpt.meta.get("embedding_of") or {}).get("sha256") != fingerprint(served)["sha256"]:
            return
        try:
            gallery = store().get(similarity.name)
            check_thumbnail(gallery, thumb)
            if method == "embedding":
                check_model(gallery, fingerprint(served), similarity.name)
            outcome.result["similar"], outcome.summary["similar"] = search(gallery, method, k, row[start:end], thumb)
            engine.count_answer(similarity.model_task)
        except GalleryUnavailable as exc:
            outcome.result["similar_error"] = str(exc)

    def links(self, answer: dict) -> dict:
        """The page's similar images get their ``image_url``."""
        return {**answer, "similar": with_image_urls(answer["similar"])} if answer.get("similar") else answer


handler = RocksHandler()
