"""The whale task's options (:class:`WhalesOptions`): API, OpenAPI, the page and the handler."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from geovision import photoid

from ..tasks.options import TaskOptions, choice_of, integer_in


class WhalesOptions(TaskOptions):
    """``POST /api/v1/whales/identify``, v2 ``parameters`` and the whale page."""

    k: int = Field(20, ge=5, le=50, description="shortlist length")
    viewpoint: Literal["auto", *photoid.VIEWPOINTS] = Field(
        "auto", description="top (drone view of the back), left or right side view; auto: portrait photos are "
                            "top views, landscape ones side views of either side")

    @field_validator("k", mode="before")
    @classmethod
    def _k(cls, value):
        return integer_in(value, 5, 50, name="k")

    @field_validator("viewpoint", mode="before")
    @classmethod
    def _viewpoint(cls, value):
        return choice_of(value, ("auto", *photoid.VIEWPOINTS), "viewpoint must be one of auto, top, left, right")
