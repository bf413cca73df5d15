"""Checkpoints: ``<model_dir>/<task>/model.pt`` (TorchScript) + ``meta.json``, read and written here.

PyTorch has deprecated TorchScript in favour of ``torch.export``; every load goes through
:func:`load_checkpoint` and every ``meta.json`` through :func:`write_meta` /
:func:`validate_meta`, so that the format can be swapped in one place.
"""
from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

#: Keys every released ``meta.json`` has, with their JSON types (the checkpoint schema).
META_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "task": str, "name": str, "version": str, "input_shape": list, "normalization": dict, "metrics": dict,
}
#: Keys that, when present, must have these types.
META_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "labels": list, "threshold": (int, float), "new_whale_threshold": (int, float), "tile_size": int,
    "embedding_dim": int, "architecture": str, "data": dict, "training": dict, "command": str, "git_commit": str,
    "weights_dtype": str,
}
#: Storage dtypes a ``meta.json`` ``weights_dtype`` may name; the module always computes in float32.
WEIGHTS_DTYPES = ("float32", "float16")


class MetaError(ValueError):
    """A ``meta.json`` that does not follow the checkpoint schema."""


def validate_meta(meta: dict) -> dict:
    """Check ``meta`` against :data:`META_REQUIRED` / :data:`META_OPTIONAL`; returns it unchanged.

    ``input_shape`` is the shape of one input row (e.g. ``[1, 128, 128]``), ``normalization``
    holds per-channel ``mean`` and ``std`` lists on the [0, 1] scale.
    Raises:
        MetaError: naming the first missing or mistyped key.
    """
    for key, kind in META_REQUIRED.items():
        if key not in meta:
            raise MetaError(f"meta.json lacks {key!r}")
        if not isinstance(meta[key], kind):
            raise MetaError(f"meta.json {key!r} must be {getattr(kind, '__name__', kind)}")
    for key, kind in META_OPTIONAL.items():
        if key in meta and meta[key] is not None and not isinstance(meta[key], kind):
            raise MetaError(f"meta.json {key!r} must be {getattr(kind, '__name__', kind)}")
    if meta.get("weights_dtype", "float32") not in WEIGHTS_DTYPES:
        raise MetaError(f"meta.json 'weights_dtype' must be one of {WEIGHTS_DTYPES}")
    norm = meta["normalization"]
    if not {"mean", "std"} <= set(norm):
        raise MetaError("meta.json 'normalization' needs 'mean' and 'std'")
    if not all(isinstance(n, int) and n > 0 for n in meta["input_shape"]):
        raise MetaError("meta.json 'input_shape' must be positive integers (one input row)")
    return meta


def write_meta(folder: str | Path, meta: dict) -> Path:
    """Validate ``meta`` and write it as ``folder/meta.json`` (indented, trailing newline)."""
    path = Path(folder) / "meta.json"
    path.write_text(json.dumps(validate_meta(meta), indent=2) + "\n")
    return path


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


def fingerprint(ckpt: Checkpoint) -> dict:
    """``{"name", "version", "sha256"}`` of a checkpoint, ``sha256`` the first 16 hex digits of the
    digest of its ``model.pt`` (computed once): what a gallery records of the model that embedded it,
    so that a retrained model is never searched against another model's embeddings."""
    if "sha256" not in ckpt.extra:
        ckpt.extra["sha256"] = hashlib.sha256((Path(ckpt.path) / "model.pt").read_bytes()).hexdigest()[:16]
    return {"name": ckpt.name, "version": ckpt.version, "sha256": ckpt.extra["sha256"]}


def find_checkpoints(model_dir: str | Path) -> dict[str, Path]:
    """Map task name -> checkpoint folder for every ``<model_dir>/<task>/model.pt``."""
    root = Path(model_dir)
    if not root.is_dir():
        return {}
    return {p.parent.name: p.parent for p in sorted(root.glob("*/model.pt"))}


def read_meta(folder: str | Path) -> dict:
    """The validated ``meta.json`` of a checkpoint folder (raises FileNotFoundError, MetaError)."""
    return validate_meta(json.loads((Path(folder) / "meta.json").read_text()))


def load_checkpoint(folder: str | Path, device: torch.device) -> Checkpoint:
    """Load ``folder/model.pt`` onto ``device`` in eval mode, with ``folder/meta.json``.

    Weights stored in float16 (``meta.json`` ``weights_dtype``, to keep a joined model under the
    size a checkpoint may have) are turned to float32 here: every model computes in float32.

    Raises:
        FileNotFoundError: if either file is missing.
        MetaError: if ``meta.json`` does not follow the schema.
        RuntimeError: if the TorchScript archive cannot be read.
    """
    folder = Path(folder)
    meta = read_meta(folder)
    with warnings.catch_warnings():  # the deprecation notice is handled by this one function
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(folder / "model.pt"), map_location=device)
    if meta.get("weights_dtype", "float32") != "float32":
        module.float()
    module.eval()
    return Checkpoint(task=meta.get("task", folder.name), module=module, meta=meta,
                      device=device, path=folder)


def is_torchscript(path: str | Path) -> bool:
    """True for a TorchScript archive (a zip with a ``code/`` folder), False for a pickled checkpoint."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())
