"""How programs call the similarity task (:class:`SimilarityApi`) and what people see of it (:class:`SimilarityPage`)."""
from __future__ import annotations

import numpy as np

from ..gallery_search import SearchOptions
from ..tasks.parts import TaskApi, TaskPage
from .views import bp


class SimilarityApi(TaskApi):
    """``POST /api/v1/similarity/<action>``: its form fields, result schema, error codes and v2 tensors."""

    action = "search"
    v2_output_specs = [("ids", "INT64", [-1, -1]), ("scores", "FP32", [-1, -1]), ("labels", "BYTES", [-1, -1])]
    fields = SearchOptions.openapi_fields()
    result_schema = {
        "method": {"type": "string"},
        "matches": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "label": {"type": "string"},
            "score": {"type": "number", "description": "cosine similarity of the embeddings (pixels: 1 - scaled L2)"},
            "percentile": {"type": "number", "description": "embedding: 0-100, the score among the gallery's own "
                           "10-nearest-neighbour scores (50 typical neighbour, 99 closer than almost any)"},
            "angle_deg": {"type": "number", "description": "embedding: angle between the embeddings, degrees"},
            "image_url": {"type": "string", "format": "uri"}}}},
    }
    errors = (*SearchOptions.error_codes(), "gallery_empty", "gallery_stale")

    def v2_outputs(self, results: list[dict], **options) -> list[tuple[str, str, np.ndarray]]:
        """``ids`` INT64 [N, k], ``scores`` FP32 [N, k], ``labels`` BYTES [N, k], best first; a
        query with fewer matches (K-Means cluster smaller than k) is padded with id -1."""
        k = max(len(r["matches"]) for r in results)
        ids = np.full((len(results), k), -1, np.int64)
        scores = np.zeros((len(results), k), np.float32)
        labels = np.full((len(results), k), b"", dtype=object)
        for i, r in enumerate(results):
            for j, m in enumerate(r["matches"]):
                ids[i, j], scores[i, j], labels[i, j] = m["id"], m["score"], m["label"].encode()
        return [("ids", "INT64", ids), ("scores", "FP32", scores), ("labels", "BYTES", labels)]


class SimilarityPage(TaskPage):
    """The similarity task's menu entry, home card, pages and history cell."""

    title = "Image similarity"
    blurb = "The most similar images of the reference gallery"
    blueprint = bp          # gallery thumbnails; the search is shown on the rocks page
    has_page = False

    def history_text(self, summary: dict) -> str:
        best = f", best: {summary['matches'][0]['label']}" if summary["matches"] else ""
        return f"{len(summary['matches'])} matches ({summary['method']}){best}"
