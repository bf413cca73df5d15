"""How programs call the whales task (:class:`WhalesApi`) and what people see of it (:class:`WhalesPage`)."""
from __future__ import annotations

import numpy as np

from ..tasks.parts import TaskApi, TaskPage
from .options import WhalesOptions
from .views import bp


class WhalesApi(TaskApi):
    """``POST /api/v1/whales/<action>``: its form fields, result schema, error codes and v2 tensors."""

    action = "identify"
    v2_output_specs = [("whale_ids", "BYTES", [-1, 5]), ("scores", "FP32", [-1, 5])]
    result_schema = {
        "predictions": {"type": "array", "minItems": 5, "maxItems": 5, "items": {"type": "object", "properties": {
            "whale_id": {"type": "string", "description": "a known individual, or new_whale"},
            "score": {"type": "number", "description": "LNBNN votes of the individual (new_whale: the votes "
                      "the first would need to be accepted); cosine similarity on a gallery without local features"},
            "inliers": {"type": "integer", "nullable": True,
                        "description": "RANSAC inliers of its best verified photo (null: not verified)"}}}},
        "shortlist": {"type": "array", "items": {"type": "object", "properties": {
            "whale_id": {"type": "string"}, "score": {"type": "number"},
            "inliers": {"type": "integer", "nullable": True}}},
            "description": "the k best individuals (no new_whale), verified ones with their inliers"},
        "viewpoint": {"type": "string", "description": "top or side: the gallery part the photo was matched with"},
        "duplicate_of": {"type": "object", "nullable": True, "properties": {
            "image": {"type": "string"}, "whale_id": {"type": "string"}}},
    }
    fields = WhalesOptions.openapi_fields()
    errors = ("gallery_empty", "gallery_stale", *WhalesOptions.error_codes())

    def v2_outputs(self, results: list[dict], **options) -> list[tuple[str, str, np.ndarray]]:
        """``whale_ids`` BYTES [N, 5] (``new_whale`` among them) and ``scores`` FP32 [N, 5], best first."""
        ids = np.array([[p["whale_id"].encode() for p in r["predictions"]] for r in results], dtype=object)
        scores = np.array([[p["score"] for p in r["predictions"]] for r in results], np.float32)
        return [("whale_ids", "BYTES", ids), ("scores", "FP32", scores)]


class WhalesPage(TaskPage):
    """The whales task's menu entry, home card, pages and history cell."""

    title = "Whale identification"
    blurb = "The 5 most likely known individuals of a whale photo, new_whale when nobody known is close"
    blueprint = bp

    def history_text(self, summary: dict) -> str:
        top = summary["predictions"][0]
        duplicate = " (duplicate of a gallery photo)" if summary.get("duplicate_of") else ""
        return f"{top['whale_id']} ({top['score']:.3f}){duplicate}"
