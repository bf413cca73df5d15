"""Identification of a whale photo against the gallery's local features (see geovision.photoid).

The gallery's per-photo keypoints and descriptors (``ragged.npz``, written by ``flask gallery
build whales``) are indexed once per gallery version and viewpoint group; a query gets LNBNN
votes, its shortlist is verified by RANSAC, and ``new_whale`` is placed by the ratio threshold
calibrated offline (``meta.json`` ``photoid``, ``python -m train.whales.photoid``).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from geovision import photoid
from geovision.metrics import NEW_WHALE, insert_new_whale
from geovision.whales import fuse_rankings, rank_individuals

from ..gallery import Gallery

_LOCK = threading.Lock()
DEFAULTS = {"ratio_threshold": 2.0, "rerank_weight": 0.0, "lnbnn_k": 2, "photos_verified": 2, "shortlist": 20,
            "embedding_weight": 0.0, "fused_threshold": 0.0}


def has_features(gallery: Gallery) -> bool:
    return "descriptors" in gallery.ragged


def features_of(gallery: Gallery, row: int) -> photoid.Features:
    return photoid.Features(gallery.ragged["keypoints"][row], gallery.ragged["descriptors"][row], (0, 0))


def feature_index(gallery: Gallery, group: str) -> photoid.FeatureIndex:
    """The FAISS index of one viewpoint group of the gallery (built once per gallery version)."""
    key = f"photoid-{group}"
    with _LOCK:
        if key not in gallery.cache:
            rows = [it["id"] for it in gallery.items
                    if photoid.viewpoint_group(it.get("viewpoint", "top")) == group]
            gallery.cache[key] = photoid.FeatureIndex(rows, [features_of(gallery, r) for r in rows],
                                                      [gallery.items[r]["label"] for r in rows])
        return gallery.cache[key]


def embedding_ranking(gallery: Gallery, embeddings: np.ndarray, group: str) -> list[tuple[str, float]]:
    """Individuals of one viewpoint group by their best photo's cosine similarity to the query.

    ``embeddings`` float32 (V, D): one L2-normalised row per query variant (a side view of unknown
    side: as it is and mirrored); a gallery photo scores its best variant."""
    key = f"embeddings-{group}"
    with _LOCK:
        if key not in gallery.cache:
            rows = [it["id"] for it in gallery.items
                    if photoid.viewpoint_group(it.get("viewpoint", "top")) == group]
            matrix = gallery.index.reconstruct_n(0, gallery.index.ntotal)[rows] if rows else np.zeros((0, 1))
            gallery.cache[key] = (matrix.astype(np.float32), np.array([gallery.items[r]["label"] for r in rows]))
        matrix, labels = gallery.cache[key]
    if not len(labels):
        return []
    return rank_individuals((matrix @ np.asarray(embeddings, np.float32).T).max(axis=1), labels)


def most_common(gallery: Gallery) -> list[str]:
    """Individuals with the most gallery photos, most first (ties by id)."""
    if "most_common" not in gallery.cache:
        counts: dict[str, int] = {}
        for item in gallery.items:
            counts[item["label"]] = counts.get(item["label"], 0) + 1
        gallery.cache["most_common"] = sorted(counts, key=lambda w: (-counts[w], w))[:5]
    return gallery.cache["most_common"]


@dataclass
class Identification:
    """``ranked`` [(whale_id, score)] best first, ``inliers`` {whale_id: n} of the verified ones,
    ``best`` {whale_id: (gallery row, Verification, query variant)}, ``new_first``."""

    ranked: list[tuple[str, float]]
    inliers: dict[str, int]
    best: dict[str, tuple[int, photoid.Verification, int]] = field(repr=False)
    new_first: bool
    threshold: float
    group: str
    mirrored: list[bool] = field(default_factory=lambda: [False])
    #: scores fused with the embedding: new_whale goes where the fused score falls below ``threshold``
    fused: bool = False

    def predictions(self, duplicate: str | None = None) -> list[dict]:
        """Five ``{"whale_id", "score", "inliers"}``; a duplicate's individual goes first."""
        ranked = self.ranked
        if duplicate:
            ranked = [(w, s) for w, s in ranked if w == duplicate][:1] or [(duplicate, 0.0)]
            ranked += [(w, s) for w, s in self.ranked if w != duplicate]
        scores = dict(ranked)
        if self.fused:
            head = ranked[:1] if duplicate else []
            ids = [w for w, _ in head + insert_new_whale(ranked[len(head):], self.threshold, k=5 - len(head))]
            new_score = self.threshold
        else:
            ids = photoid.five_predictions(ranked, self.new_first and not duplicate)
            new_score = self.threshold * (ranked[1][1] if len(ranked) > 1 else 0.0)
        return [{"whale_id": w, "inliers": self.inliers.get(w) if w != NEW_WHALE else None,
                 "score": round(new_score if w == NEW_WHALE else scores[w], 6)} for w in ids]

    def shortlist(self, k: int) -> list[dict]:
        return [{"whale_id": w, "score": round(s, 6), "inliers": self.inliers.get(w)} for w, s in self.ranked[:k]]


def identify(gallery: Gallery, image: Image.Image, params: dict, shortlist: int = 20,
             viewpoint: str = "auto", embeddings: np.ndarray | None = None) -> Identification:
    """Rank the gallery's individuals for one photo (raises ValueError for an unknown viewpoint).

    With ``embeddings`` (the query variants' L2-normalised embeddings, float32 (V, D)) and an
    ``embedding_weight`` in ``params``, the votes are fused with the embedding's cosine ranking
    (:func:`geovision.whales.fuse_rankings`) and ``new_whale`` placed by ``fused_threshold``."""
    params = {**DEFAULTS, **params}
    group, variants = photoid.query_variants(image, viewpoint)
    verified = int(params["shortlist"])   # as calibrated offline; the answer's shortlist may be longer
    ranked, inliers, best = photoid.rank_and_verify(
        feature_index(gallery, group), variants, lambda row: features_of(gallery, row), max(shortlist, verified),
        int(params["lnbnn_k"]), int(params["photos_verified"]))
    if len(ranked) < 5:   # too few votes (a side view, a tiny gallery): the most photographed individuals follow
        ranked += [(w, 0.0) for w in most_common(gallery) if w not in dict(ranked)][:5 - len(ranked)]
    ranked = photoid.rerank(ranked, inliers, float(params["rerank_weight"]), verified)
    weight = float(params["embedding_weight"])
    if weight and embeddings is not None:
        fused = fuse_rankings(ranked, embedding_ranking(gallery, embeddings, group), weight)
        return Identification(fused, inliers, best, False, float(params["fused_threshold"]), group,
                              [f.mirrored for f in variants], fused=True)
    threshold = float(params["ratio_threshold"])
    return Identification(ranked, inliers, best, photoid.decide_new_whale(ranked, threshold), threshold, group,
                          [f.mirrored for f in variants])
