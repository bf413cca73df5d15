"""The salt task's options (:class:`SaltOptions`): the API form fields, the OpenAPI fields, the
pages' validation and the handler's keyword options all come from this one model."""
from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field, WithJsonSchema, field_validator

from geovision import refine

from ..tasks.options import TaskOptions, choice_of
from . import segy
from .inputs import parse_data_area
from .volume_job import FUSE

MAX_CLICK_EXTENT = 2 ** 31   #: clicks are checked against the picture later; here only their form


def parse_threshold(value) -> float | None:
    """Form value -> threshold in [0, 1], None when blank; raises ValueError otherwise."""
    if value is None or not str(value).strip():
        return None
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = float("nan")
    if not np.isfinite(t) or not 0.0 <= t <= 1.0:
        raise ValueError("threshold must be a number between 0 and 1")
    return t


class SaltOptions(TaskOptions):
    """``POST /api/v1/salt/segment`` (and ``refine``, ``jobs``), the salt pages and ``flask predict``."""

    threshold: Annotated[float | None, WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1})] = Field(
        None, description="salt probability cut (default: the checkpoint's)")
    spec: Annotated[segy.SliceSpec | None, WithJsonSchema(
        {"type": "string", "pattern": r"^(inline|crossline|time):-?\d+(\.\d+)?$|^section$|^volume$"})] = Field(
        None, alias="slice",
        description="SEG-Y files: inline:N, crossline:N, time:MS (nearest sample), section, or volume (every inline "
                    "of a 3-D survey: always a background job whose result is a SEG-Y volume of salt probability); "
                    "default: the survey's middle inline")
    domain: Literal["time", "depth"] = Field(
        "time", description="SEG-Y: the samples are two-way time in ms or depth in m (headers cannot tell)")
    data_area: Annotated[tuple[int, int, int, int] | str, WithJsonSchema({"type": "string"})] = Field(
        "auto", description="pictures: where the section is plotted. auto (found: margins, titles, labels, colour "
                            "bars and flat fills of any grey are no data), all (the whole picture), or "
                            "left,top,right,bottom in pixels (a crop; right and bottom exclusive)")
    clicks: Annotated[list[dict], WithJsonSchema({"type": "string"})] = Field(
        default_factory=list,
        description="refine: a JSON list of {\"x\": column, \"y\": row, \"salt\": true|false} in the image's pixels "
                    "(origin top left), at most 50; each says salt or not salt there and the tiles holding a click "
                    "are redrawn by the click model (models/salt_clicks; the random-walker baseline of "
                    "geovision.refine without it). No clicks: the segment answer")
    fuse: Literal["inline", "inline+crossline"] = Field(
        "inline", description="slice=volume: inline (each inline as its 2-D answer) or inline+crossline (a second "
                              "pass over the crosslines, probabilities averaged: smoother across inlines, 2x work)")

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, value):
        return parse_threshold(value)

    @field_validator("spec", mode="before")
    @classmethod
    def _slice(cls, value):
        if value is None or isinstance(value, segy.SliceSpec):
            return value
        try:
            return segy.parse_slice(value)
        except segy.SegyError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("domain", mode="before")
    @classmethod
    def _domain(cls, value):
        return choice_of(value, ("time", "depth"), "domain must be time (samples in ms) or depth (samples in m)")

    @field_validator("data_area", mode="before")
    @classmethod
    def _data_area(cls, value):
        return tuple(value) if isinstance(value, (tuple, list)) else parse_data_area(value)

    @field_validator("clicks", mode="before")
    @classmethod
    def _clicks(cls, value):
        if isinstance(value, list):
            return value
        try:
            return [vars(c) for c in refine.parse_clicks(value, (MAX_CLICK_EXTENT, MAX_CLICK_EXTENT))]
        except refine.ClickError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("fuse", mode="before")
    @classmethod
    def _fuse(cls, value):
        return choice_of(value, FUSE, f"fuse must be one of {', '.join(FUSE)} (volume jobs)")
