"""Gallery search methods (NumPy + FAISS, no Flask), shared by the server and evaluation.

- ``embedding``: exact inner product on L2-normalised embeddings (cosine similarity),
  ``faiss.IndexFlatIP``.
- ``pixels``: the seed project's method, Euclidean distance between raw pixel vectors;
  score = 1 / (1 + distance / sqrt(dim)).
- ``kmeans``: the seed project's K-Means on raw pixels; the matches are the members of
  the query's cluster closest to the cluster centre (score as for ``pixels``, to the centre).
"""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

METHODS = ("embedding", "pixels", "kmeans")


def flat_index(vectors: np.ndarray, metric: str = "ip") -> faiss.Index:
    """Exact FAISS index of float32 (N, D) vectors (``ip`` inner product or ``l2``)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1]) if metric == "ip" else faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, ids), each (Q, k'), k' = min(k, index size); ids are gallery rows."""
    k = min(k, index.ntotal)
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, ids


def pixel_vectors(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, H*W*C) in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def l2_to_score(squared_l2: np.ndarray, dim: int) -> np.ndarray:
    """Map FAISS squared L2 distances to a similarity in (0, 1] (1 = identical)."""
    return 1.0 / (1.0 + np.sqrt(np.maximum(squared_l2, 0.0) / dim))


def fit_kmeans(pixels: np.ndarray, n_clusters: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K-Means on pixel vectors (N, D): centroids (K, D), assignment (N,), distance to centre (N,)."""
    km = faiss.Kmeans(pixels.shape[1], n_clusters, niter=25, seed=seed, verbose=False)
    km.train(np.ascontiguousarray(pixels, dtype=np.float32))
    dist, assign = km.index.search(np.ascontiguousarray(pixels, dtype=np.float32), 1)
    return km.centroids.copy(), assign[:, 0].astype(np.int64), dist[:, 0]


def kmeans_search(centroids: np.ndarray, assign: np.ndarray, dist: np.ndarray, queries: np.ndarray,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
    """Members of each query's nearest cluster, most central first: (scores, ids), (Q, k')."""
    _, nearest = flat_index(centroids, "l2").search(np.ascontiguousarray(queries, dtype=np.float32), 1)
    out_ids, out_scores = [], []
    for c in nearest[:, 0]:
        members = np.flatnonzero(assign == c)
        top = members[np.argsort(dist[members], kind="stable")[:k]]
        out_ids.append(top)
        out_scores.append(l2_to_score(dist[top], centroids.shape[1]))
    k_out = min(len(x) for x in out_ids) if out_ids else 0
    return np.stack([s[:k_out] for s in out_scores]), np.stack([i[:k_out] for i in out_ids])


def precision_at_k(query_labels: np.ndarray, match_labels: np.ndarray) -> float:
    """Mean fraction of the k matches (Q, k) whose label equals the query's (Q,)."""
    return float((match_labels == query_labels[:, None]).mean())


def save_ragged(path: str | Path, ragged: dict[str, list[np.ndarray]], n: int) -> None:
    """Keep arrays of a different length per row (e.g. each photo's keypoints) in one ``.npz``:
    per name the concatenation and ``<name>__offsets`` (n + 1 row starts). Raises ValueError
    when a name has not ``n`` rows."""
    arrays = {}
    for name, rows in ragged.items():
        if len(rows) != n:
            raise ValueError(f"ragged {name!r} has {len(rows)} rows for {n} items")
        arrays[name] = np.concatenate(rows)
        arrays[f"{name}__offsets"] = np.cumsum([0] + [len(r) for r in rows])
    np.savez(path, **arrays)


def load_ragged(path: str | Path) -> dict[str, list[np.ndarray]]:
    """The arrays of :func:`save_ragged`, one per row; ``{}`` when ``path`` does not exist."""
    if not Path(path).exists():
        return {}
    with np.load(path) as npz:
        out = {}
        for name in (k for k in npz.files if not k.endswith("__offsets")):
            data, off = npz[name], npz[f"{name}__offsets"]
            out[name] = [data[a:b] for a, b in zip(off[:-1], off[1:])]
    return out


def neighbour_scores(index: faiss.Index, k: int = 10, sample: int = 1000, seed: int = 0) -> np.ndarray:
    """Sorted float32 scores between gallery rows and their own ``k`` nearest neighbours (self left
    out), for up to ``sample`` rows drawn at random from a flat ``index`` (IndexFlatIP or L2 on
    :func:`l2_to_score`'s scale is not handled: inner-product indexes only). The reference for
    :func:`score_percentile`: what a good match looks like inside this gallery."""
    n = index.ntotal
    if n < 2:
        return np.zeros(0, np.float32)
    rows = np.random.default_rng(seed).choice(n, size=min(n, sample), replace=False)
    vectors = np.stack([index.reconstruct(int(i)) for i in rows])
    scores, ids = index.search(vectors, min(n, k + 1))
    keep = ids != rows[:, None]
    return np.sort(scores[keep].astype(np.float32)[: len(rows) * k])


def score_percentile(score: float, reference: np.ndarray) -> float:
    """Percentile (0-100) of ``score`` among ``reference`` (sorted, :func:`neighbour_scores`): 50 is a
    typical neighbour of a gallery image, 99 closer than almost any. A calibrated score in the
    manner of score normalisation against an impostor/neighbour distribution (e.g. Jain, Nandakumar
    & Ross, "Score normalization in multimodal biometric systems", Pattern Recognition 2005)."""
    if len(reference) == 0:
        return 100.0
    return round(100.0 * float(np.searchsorted(reference, score, side="right")) / len(reference), 1)


def calibrated(scores: np.ndarray, reference: np.ndarray) -> list[dict]:
    """``{"percentile", "angle_deg"}`` of each cosine score (N,): its :func:`score_percentile` and
    the angle between the two unit embeddings in degrees (arccos, which spreads scores near 1)."""
    return [{"percentile": score_percentile(float(s), reference),
             "angle_deg": round(float(np.degrees(np.arccos(np.clip(s, -1.0, 1.0)))), 2)} for s in scores]
