"""The one checkpoint loader: ``models/<task>/model.pt`` (TorchScript) + ``meta.json``.

PyTorch has deprecated TorchScript in favour of ``torch.export``; every load goes
through :func:`load_checkpoint` so that the format can be swapped in one place.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class Checkpoint:
    """A loaded model with its metadata."""

    task: str
    module: torch.nn.Module
    meta: dict
    device: torch.device
    path: Path
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.meta.get("name", self.task)

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "0"))


def find_checkpoints(model_dir: str | Path) -> dict[str, Path]:
    """Map task name -> checkpoint folder for every ``<model_dir>/<task>/model.pt``."""
    root = Path(model_dir)
    if not root.is_dir():
        return {}
    return {p.parent.name: p.parent for p in sorted(root.glob("*/model.pt"))}


def load_checkpoint(folder: str | Path, device: torch.device) -> Checkpoint:
    """Load ``folder/model.pt`` onto ``device`` in eval mode, with ``folder/meta.json``.

    Raises:
        FileNotFoundError: if either file is missing.
        RuntimeError: if the TorchScript archive cannot be read.
    """
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    with warnings.catch_warnings():  # the deprecation notice is handled by this one function
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(folder / "model.pt"), map_location=device)
    module.eval()
    return Checkpoint(task=meta.get("task", folder.name), module=module, meta=meta,
                      device=device, path=folder)
