"""Rock classification handler: photo -> 28x28 RGB input -> class probabilities."""
from __future__ import annotations

import torch
from flask import current_app

from geovision.checkpoint import Checkpoint
from geovision.imaging import decode_image, rgb_model_input

from ..tasks.handler import Prepared, TaskHandler
from .views import bp


class RocksHandler(TaskHandler):
    """Rock type (andesite, gneiss, marble, quartzite, rhyolite, schist) with its probabilities."""

    name = "rocks"
    title = "Rock classification"
    blurb = "Rock type with probabilities, and the most similar gallery images"
    api_action = "classify"
    blueprint = bp

    def preprocess(self, item, ckpt: Checkpoint) -> Prepared:
        image = decode_image(item.data, current_app.config["MAX_IMAGE_PIXELS"])
        _, x = rgb_model_input(image, ckpt.meta)
        return Prepared(torch.from_numpy(x[None]), image.size)

    def postprocess(self, prepared: Prepared, outputs: torch.Tensor | None, ckpt: Checkpoint,
                    public_id: str) -> tuple[dict, dict]:
        probs = outputs[0].float().numpy()
        labels = ckpt.meta["labels"]
        probabilities = {lab: round(float(p), 6) for lab, p in zip(labels, probs)}
        result = {"label": labels[int(probs.argmax())], "probabilities": probabilities}
        return result, result

    def history_text(self, summary: dict) -> str:
        label = summary["label"]
        return f"{label} ({summary['probabilities'][label] * 100:.1f} %)"


handler = RocksHandler()
