"""Rock classification handler: photo -> 28x28 RGB input -> class probabilities."""
from __future__ import annotations

import torch
from flask import current_app

from geovision.checkpoint import Checkpoint
from geovision.imaging import decode_image, rgb_model_input

from ..recorder import Outcome
from ..tasks.handler import Prepared, TaskHandler
from .parts import RocksApi, RocksPage


class RocksHandler(TaskHandler):
    """Rock type (andesite, gneiss, marble, quartzite, rhyolite, schist) with its probabilities."""

    name = "rocks"
    api = RocksApi()
    page = RocksPage()

    def preprocess(self, item, ckpt: Checkpoint) -> Prepared:
        image = decode_image(item.data, current_app.config["MAX_IMAGE_PIXELS"])
        _, x = rgb_model_input(image, ckpt.meta)
        return Prepared(torch.from_numpy(x[None]), image.size)

    def postprocess(self, prepared: Prepared, outputs: torch.Tensor | None, ckpt: Checkpoint) -> Outcome:
        probs = outputs[0].float().numpy()
        labels = ckpt.meta["labels"]
        probabilities = {lab: round(float(p), 6) for lab, p in zip(labels, probs)}
        result = {"label": labels[int(probs.argmax())], "probabilities": probabilities}
        return Outcome(result, result)


handler = RocksHandler()
