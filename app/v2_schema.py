"""The JSON header of an Open Inference Protocol (v2) infer request, validated with pydantic.

Field names and types follow the v2 REST specification's ``$inference_request`` (``id``,
``parameters``, ``inputs`` with ``name``, ``shape``, ``datatype``, ``parameters``, ``data``;
``outputs`` with ``name`` and ``parameters``) and Triton's binary tensor extension
(``binary_data_size`` per input, ``binary_data`` per output, ``binary_data_output``).
Unknown extra fields are allowed, as the specification allows extensions; wrong types, negative
sizes and shapes are refused with the field's path.
Source: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
NonNegative = Annotated[StrictInt, Field(ge=0)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class InputParameters(_Open):
    binary_data_size: NonNegative | None = None   #: bytes of this tensor in the binary part of the body


class InferInput(_Open):
    name: StrictStr
    datatype: StrictStr
    shape: list[NonNegative]
    parameters: InputParameters | None = None
    data: list[Any] | None = None


class RequestedOutput(_Open):
    name: StrictStr
    parameters: dict[str, Scalar] | None = None


class InferRequest(_Open):
    id: StrictStr | None = None
    parameters: dict[str, Scalar] | None = None
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None
