"""Rock classification handler: photo -> 28x28 RGB input -> class probabilities."""
from __future__ import annotations

import numpy as np
import torch
from flask import current_app

from geovision.checkpoint import Checkpoint
from geovision.imaging import decode_image, rgb_model_input

from ..recorder import Outcome
from ..tasks.handler import Prepared, TaskHandler
from .views import bp


class RocksHandler(TaskHandler):
    """Rock type (andesite, gneiss, marble, quartzite, rhyolite, schist) with its probabilities."""

    name = "rocks"
    title = "Rock classification"
    blurb = "Rock type with probabilities, and the most similar gallery images"
    api_action = "classify"
    blueprint = bp
    v2_output_specs = [("probabilities", "FP32", [-1, 6]), ("label", "BYTES", [-1])]
    result_schema = {"label": {"type": "string", "enum": ["andesite", "gneiss", "marble", "quartzite", "rhyolite",
                                                          "schist"]},
                     "probabilities": {"type": "object", "additionalProperties": {"type": "number"},
                                       "description": "probability of each rock type"}}

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

    def v2_outputs(self, results: list[dict], **options) -> list[tuple[str, str, np.ndarray]]:
        """``probabilities`` FP32 [N, 6] (classes in the checkpoint's label order) and ``label`` BYTES [N]."""
        probs = np.array([list(r["probabilities"].values()) for r in results], np.float32)
        return [("probabilities", "FP32", probs),
                ("label", "BYTES", np.array([r["label"].encode() for r in results], dtype=object))]

    def history_text(self, summary: dict) -> str:
        label = summary["label"]
        return f"{label} ({summary['probabilities'][label] * 100:.1f} %)"


handler = RocksHandler()
