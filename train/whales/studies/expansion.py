"""Query expansion and database-side augmentation of whale embeddings (re-ranking trials).

Average query expansion (Chum et al., "Total recall", ICCV 2007) replaces a query's embedding by
the normalised sum of itself and its ``k`` nearest gallery embeddings; database-side augmentation
(Arandjelović & Zisserman, "Three things everyone should know to improve object retrieval",
CVPR 2012) does the same to every gallery embedding with its gallery neighbours, so that photos of
one individual pull together. Both are measured one by one in :mod:`train.whales.fusion`.
Neighbours are taken within the query's viewpoint group only (``groups``), as the ranking is.
"""
from __future__ import annotations

import numpy as np


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def expand(vectors: np.ndarray, gallery: np.ndarray, k: int, same: np.ndarray | None = None,
           skip_self: bool = False) -> np.ndarray:
    """float32 (N, D): each row of ``vectors`` (N, D) plus its ``k`` most similar ``gallery`` rows
    (G, D), renormalised. ``same`` bool (N, G): allowed neighbours (viewpoint groups);
    ``skip_self``: the best match is the row itself (DBA, ``vectors`` is the gallery) and is left out."""
    sims = vectors @ gallery.T
    if same is not None:
        sims = np.where(same, sims, -np.inf)
    order = np.argsort(-sims, axis=1)[:, int(skip_self):int(skip_self) + k]
    out = vectors.copy()
    for j in range(order.shape[1]):
        picked = order[:, j]
        ok = np.isfinite(sims[np.arange(len(vectors)), picked])[:, None]
        out += np.where(ok, gallery[picked], 0.0)
    return _normalise(out)


def same_group(rows_a: list[str], rows_b: list[str]) -> np.ndarray:
    """bool (A, B): whether the viewpoint groups match."""
    return np.array(rows_a)[:, None] == np.array(rows_b)[None, :]
