"""The similarity gallery's search answer, shared by the similarity task and the rocks page.

The similarity task embeds its query with its own model; the rocks page reuses the embedding
columns of the rocks classifier's output (the same network, :mod:`train.rocks.combine`), so one
forward pass answers both. Both shape the answer here.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from flask import url_for
from pydantic import Field, field_validator

from geovision.retrieval import METHODS

from .gallery import Gallery, GalleryUnavailable
from .tasks.options import TaskOptions, choice_of, integer_in


def check_thumbnail(gallery: Gallery, thumb: np.ndarray) -> None:
    """Raise GalleryUnavailable when the query thumbnail (H, W, 3) uint8 does not match the gallery's."""
    if gallery.pixels is not None and thumb.shape != gallery.pixels.shape[1:]:
        raise GalleryUnavailable("the gallery thumbnails do not match the model input; rebuild the gallery")


def search(gallery: Gallery, method: str, k: int, embedding: np.ndarray | None,
           thumb: np.ndarray) -> tuple[dict, dict]:
    """(public result ``{"method", "matches": [{"id", "label", "score"}]}``, recorded summary) of
    the ``k`` best matches; ``embedding`` float32 (D,) L2-normalised (method ``embedding``)."""
    matches = gallery.search(method, k, embedding=embedding, pixels=thumb)
    for m in matches:
        m.pop("path", None)
    summary = {"method": method, "k": k, "gallery": gallery.version,
               "matches": [{key: m[key] for key in ("id", "label", "score", "percentile", "angle_deg") if key in m}
                           for m in matches]}
    return {"method": method, "matches": matches}, summary


def with_image_urls(answer: dict) -> dict:
    """``answer`` with each match's gallery thumbnail URL (``image_url``)."""
    return {**answer, "matches": [{**m, "image_url": url_for("similarity.gallery_image", item_id=m["id"],
                                                             _external=True)} for m in answer["matches"]]}


class SearchOptions(TaskOptions):
    """The search's options: ``POST /api/v1/similarity/search``, v2 ``parameters`` and the rocks
    page's search fields (the similarity task's :attr:`~app.tasks.handler.TaskHandler.options_model`)."""

    k: int = Field(10, ge=1, le=100, description="matches to return")
    method: Literal[METHODS] = Field("embedding", description="CNN embedding (cosine), or the seed's raw pixels / K-Means")

    @field_validator("k", mode="before")
    @classmethod
    def _k(cls, value):
        return integer_in(value, 1, 100, name="k")

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value):
        return choice_of(value, METHODS, f"method must be one of {', '.join(METHODS)}")
