"""What the pure pipeline answers for one item (:class:`Outcome`), before anything is written.

Imports nothing of the server: the handlers build outcomes, :mod:`app.recorder` writes them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A file kept with an answer: its bytes, a picture (saved as PNG), or a function writing it to a path.
Artefact = bytes | Any | Callable[[Path], None]


@dataclass
class Outcome:
    """One item answered by the pure pipeline, before anything is written.

    ``result``: the public fields (JSON-safe, no URLs; :meth:`TaskHandler.links` adds those);
    ``summary``: what the database row keeps (``prediction.result``); ``artefacts``: file name ->
    :data:`Artefact`, kept in the answer's folder by :func:`app.recorder.record`. :meth:`TaskHandler.run`
    fills the rest: the task, the input's ``filename`` and ``sha256``, ``size`` (width, height) in
    pixels, the model's name and version, and ``timings`` in ms (decode_ms, inference_ms, total_ms).
    """

    result: dict
    summary: dict
    artefacts: dict[str, Artefact] = field(default_factory=dict)
    task: str = ""
    filename: str = ""
    sha256: str = ""
    size: tuple[int, int] = (0, 0)
    model_name: str = ""
    model_version: str = ""
    timings: dict[str, float] = field(default_factory=dict)
