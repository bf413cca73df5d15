"""How programs call the rocks task (:class:`RocksApi`) and what people see of it (:class:`RocksPage`)."""
from __future__ import annotations

import numpy as np

from ..tasks.parts import TaskApi, TaskPage
from .views import bp


class RocksApi(TaskApi):
    """``POST /api/v1/rocks/<action>``: its form fields, result schema, error codes and v2 tensors."""

    action = "classify"
    v2_output_specs = [("probabilities", "FP32", [-1, 6]), ("label", "BYTES", [-1])]
    result_schema = {"label": {"type": "string", "enum": ["andesite", "gneiss", "marble", "quartzite", "rhyolite",
                                                          "schist"]},
                     "probabilities": {"type": "object", "additionalProperties": {"type": "number"},
                                       "description": "probability of each rock type"}}

    def v2_outputs(self, results: list[dict], **options) -> list[tuple[str, str, np.ndarray]]:
        """``probabilities`` FP32 [N, 6] (classes in the checkpoint's label order) and ``label`` BYTES [N]."""
        probs = np.array([list(r["probabilities"].values()) for r in results], np.float32)
        return [("probabilities", "FP32", probs),
                ("label", "BYTES", np.array([r["label"].encode() for r in results], dtype=object))]


class RocksPage(TaskPage):
    """The rocks task's menu entry, home card, pages and history cell."""

    title = "Rock classification"
    blurb = "Rock type with probabilities, and the most similar gallery images"
    blueprint = bp

    def history_text(self, summary: dict) -> str:
        label = summary["label"]
        return f"{label} ({summary['probabilities'][label] * 100:.1f} %)"
