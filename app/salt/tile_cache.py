"""The released model's tile outputs of recent salt inputs, kept in this process's memory so that
click editing (``clicks``) of a whole section reruns only the clicked tiles through the click
model, not every tile through the released one.

Keyed by the input's SHA-256, the slice, domain and data area it was read with, and the model's
name and version; stored as float16 in a ``cachetools.LRUCache`` bounded in bytes
(``SALT_TILE_CACHE_MB``, 0 turns it off). A miss (another gunicorn worker answered the first
request, or the entry was evicted) simply reruns the released model.
"""
from __future__ import annotations

import threading

import torch
from cachetools import LRUCache
from flask import current_app

from geovision.checkpoint import Checkpoint

EXTENSION = "salt_tile_outputs"


class TileOutputs:
    """Thread-safe LRU of output tensors (n, 1, S, S), at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._cache: LRUCache = LRUCache(max(1, self.max_bytes), getsizeof=lambda t: t.numel() * t.element_size())
        self._lock = threading.Lock()

    def get(self, key: tuple) -> torch.Tensor | None:
        """float32 outputs stored under ``key``, or None."""
        with self._lock:
            found = self._cache.get(key)
        return None if found is None else found.float()

    def put(self, key: tuple, outputs: torch.Tensor) -> None:
        """Keep ``outputs`` (as float16); one larger than the whole cache is not kept."""
        small = outputs.detach().to(torch.float16)
        if self.max_bytes <= 0 or small.numel() * small.element_size() > self.max_bytes:
            return
        with self._lock:
            self._cache[key] = small


def init_app(app) -> None:
    """Create the app's cache from ``SALT_TILE_CACHE_MB``."""
    app.extensions[EXTENSION] = TileOutputs(int(float(app.config.get("SALT_TILE_CACHE_MB", 256)) * 2 ** 20))


def output_key(item, ckpt: Checkpoint, spec=None, domain: str = "time", data_area="auto") -> tuple:
    """What the released model's tile outputs of ``item`` depend on (the threshold does not)."""
    return (getattr(item, "sha256", None), str(spec), domain, str(data_area), ckpt.name, ckpt.version)


def cached_or_run(keys: list[tuple], rows: list[torch.Tensor | None], run, reuse: list[bool]) -> list:
    """The outputs of each item's ``rows``: from the cache for an item with ``reuse`` (click
    editing) whose outputs are kept, else from one ``run(rows of the others)`` (a list in, a list
    out: one trip to the batcher), which are then kept."""
    cache: TileOutputs | None = current_app.extensions.get(EXTENSION)
    outputs: list = [None] * len(rows)
    missing = []
    for i, (key, item_rows, again) in enumerate(zip(keys, rows, reuse)):
        found = cache.get(key) if cache is not None and again and key[0] is not None and item_rows is not None else None
        if found is not None and found.shape == item_rows.shape[:1] + found.shape[1:]:
            outputs[i] = found
        else:
            missing.append(i)
    for i, out in zip(missing, run([rows[i] for i in missing]) if missing else []):
        outputs[i] = out
        if cache is not None and keys[i][0] is not None and out is not None:
            cache.put(keys[i], out)
    return outputs
