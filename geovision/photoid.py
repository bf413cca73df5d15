"""Whale photo-identification by local features (pure: OpenCV, NumPy, FAISS; no Flask).

The classical photo-ID pipeline of Wild Me's HotSpotter (Crall et al., "HotSpotter -
Patterned species instance recognition", WACV 2013), cut to what measured well on the beluga
photos (see the model card's method table):

1. :func:`prepare_photo`: grey, long side :data:`LONG_SIDE` px, the whale's body kept by a
   mask (Otsu threshold of the blurred photo, largest component, eroded so the body outline
   and the water give no features), CLAHE so scars and nicks stand out.
2. :func:`extract_features`: SIFT keypoints in the mask (OpenCV), **upright** descriptors
   (the crops are head-up: rotation invariance only loses information), RootSIFT (Arandjelovic
   & Zisserman 2012), stored as uint8.
3. :class:`FeatureIndex` / :meth:`FeatureIndex.lnbnn`: every query descriptor finds its ``k``
   nearest gallery descriptors and the ``k+1``-th as the normaliser; each individual collects
   ``d(k+1) - d(j)`` once per query descriptor (local naive Bayes nearest neighbour, McCann &
   Lowe 2012, as in HotSpotter).
4. :func:`verify`: ratio-test matches of the query with one gallery photo, RANSAC similarity
   transform (``cv2.estimateAffinePartial2D``); the inlier count is the verification score and
   the inlier pairs are drawn for the researcher (:func:`geovision.photoid_figures.draw_matches`).
5. ``new_whale`` goes first unless the best individual's votes are at least
   ``ratio_threshold`` times the second's (calibrated on validation, :func:`decide_new_whale`).

Side views (``left``/``right``) are matched only with side views, right views mirrored to
look left; top views only with top views.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import faiss
import numpy as np
from PIL import Image, ImageOps

from .metrics import NEW_WHALE

LONG_SIDE = 512            #: px, the photo's longer side after resizing (most photos already have it)
CONTRAST_THRESHOLD = 0.04  #: SIFT's (OpenCV default); 0.02 and 0.01 gave more, weaker features and ranked worse
MASK_ERODE = 0.06          #: erosion radius of the body mask, as a share of the shorter side
DESCRIPTOR_SCALE = 512.0   #: RootSIFT component x this, clipped, stored as uint8
VIEWPOINTS = ("top", "left", "right")
MAX_SCALE_CHANGE = 2.5     #: a verified match keeps the photos' scales within this factor (both are LONG_SIDE)
MIN_SPREAD_PX = 6.0        #: inliers spread at least this (std, px) along each axis on both photos
MAX_ROTATION_DEG = 30.0    #: prepared photos are upright (body axis vertical): a fit turning more is no match


def viewpoint_group(viewpoint: str) -> str:
    """``top`` or ``side``: the gallery part a photo of this viewpoint is matched with."""
    return "top" if viewpoint == "top" else "side"


def guess_viewpoint(width: int, height: int) -> str:
    """``top`` for portrait photos (the drone crops of the back), ``left`` for landscape ones (side
    views from vessels; which side is unknown, :func:`query_variants` tries both)."""
    return "top" if height >= width else "left"


@dataclass
class Features:
    """Local features of one photo: ``keypoints`` float32 (M, 3) = x, y, size in the prepared
    photo's pixels (:func:`prepare_photo`, mirrored for right views), ``descriptors`` uint8 (M, 128)
    RootSIFT x :data:`DESCRIPTOR_SCALE`, ``size`` (width, height) of the prepared photo,
    ``mirrored`` when the photo was flipped left-right first."""

    keypoints: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]
    mirrored: bool = False

    def __len__(self) -> int:
        return len(self.keypoints)

    def float_descriptors(self) -> np.ndarray:
        return self.descriptors.astype(np.float32) / DESCRIPTOR_SCALE


def whale_mask(grey: np.ndarray) -> np.ndarray:
    """uint8 (H, W) 0/255 mask of the whale (the largest bright blob, eroded) in a grey photo."""
    blurred = cv2.GaussianBlur(grey, (0, 0), 3)
    _, mask = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    if n > 1:
        mask = np.where(labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])), 255, 0).astype(np.uint8)
    r = max(1, int(MASK_ERODE * min(grey.shape)))
    return cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))


def prepare_photo(image: Image.Image, mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (H, W) CLAHE-equalised grey photo with the longer side :data:`LONG_SIDE`, its mask).

    ``mirror`` flips left-right (right side views, to compare them with left ones).
    """
    image = ImageOps.exif_transpose(image).convert("L")
    if mirror:
        image = ImageOps.mirror(image)
    grey = np.asarray(image)
    h, w = grey.shape
    scale = LONG_SIDE / max(h, w)
    if scale != 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    mask = whale_mask(grey)
    return cv2.createCLAHE(2.0, (8, 8)).apply(grey), mask


def extract_features(image: Image.Image, mirror: bool = False, body_only: bool = True) -> Features:
    """Upright RootSIFT features of the whale's body (see the module docstring); ``body_only``
    False keeps the whole photo (water and outline included: the ablation of the mask)."""
    grey, mask = prepare_photo(image, mirror)
    if not body_only:
        mask = np.full_like(mask, 255)
    sift = cv2.SIFT_create(contrastThreshold=CONTRAST_THRESHOLD)
    found = {(round(k.pt[0], 1), round(k.pt[1], 1), round(k.size, 1)): k for k in sift.detect(grey, mask)}
    keypoints = [cv2.KeyPoint(k.pt[0], k.pt[1], k.size, 0) for k in found.values()]
    size = (grey.shape[1], grey.shape[0])
    keypoints, desc = sift.compute(grey, keypoints) if keypoints else ((), None)
    if desc is None or not len(keypoints):
        return Features(np.zeros((0, 3), np.float32), np.zeros((0, 128), np.uint8), size, mirror)
    root = np.sqrt(desc / (desc.sum(1, keepdims=True) + 1e-7))
    points = np.array([[k.pt[0], k.pt[1], k.size] for k in keypoints], np.float32)
    return Features(points, np.clip(np.rint(root * DESCRIPTOR_SCALE), 0, 255).astype(np.uint8), size, mirror)


def query_variants(image: Image.Image, viewpoint: str = "auto") -> tuple[str, list[Features]]:
    """(group, features to match) of a query: one variant for ``top``/``left``/``right``; a
    landscape photo with ``auto`` is a side view of unknown side: as it is and mirrored."""
    if viewpoint == "auto":
        viewpoint = guess_viewpoint(*image.size)
        if viewpoint != "top":
            return "side", [extract_features(image), extract_features(image, mirror=True)]
    if viewpoint not in VIEWPOINTS:
        raise ValueError(f"unknown viewpoint {viewpoint!r}; use auto or one of {VIEWPOINTS}")
    return viewpoint_group(viewpoint), [extract_features(image, mirror=viewpoint == "right")]


@dataclass
class Votes:
    """LNBNN votes of one query: ``individuals`` {whale_id: score}, ``photos`` {row: score}."""

    individuals: dict[str, float]
    photos: dict[int, float]

    def ranked(self) -> list[tuple[str, float]]:
        return sorted(self.individuals.items(), key=lambda kv: (-kv[1], kv[0]))


class FeatureIndex:
    """Exact L2 FAISS index over the descriptors of a set of gallery photos.

    Args:
        rows: gallery row ids of the photos; features: their :class:`Features`; labels: their
            individuals.
    """

    def __init__(self, rows: list[int], features: list[Features], labels: list[str]):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=object)
        self.label_of = dict(zip(self.rows.tolist(), labels))
        counts = [len(f) for f in features]
        self.owner = np.repeat(np.arange(len(features)), counts)
        self.index = faiss.IndexFlatL2(128)
        if sum(counts):
            self.index.add(np.concatenate([f.float_descriptors() for f in features]))

    def lnbnn(self, query: Features, k: int = 2) -> Votes:
        """LNBNN votes of the query's descriptors (``k`` neighbours, the ``k+1``-th normalises).

        An individual counts once per query descriptor, with its best neighbour.
        """
        if not len(query) or self.index.ntotal <= k:
            return Votes({}, {})
        dist, nn = self.index.search(query.float_descriptors(), k + 1)
        dist = np.sqrt(np.maximum(dist, 0))
        score = (dist[:, k:] - dist[:, :k]).ravel()
        photo = self.owner[nn[:, :k]].ravel()
        label = self.labels[photo]
        qi = np.repeat(np.arange(len(query)), k)
        _, first = np.unique(np.stack([qi, np.unique(label, return_inverse=True)[1]]), axis=1, return_index=True)
        individuals: dict[str, float] = {}
        photos: dict[int, float] = {}
        for i in first:
            individuals[label[i]] = individuals.get(label[i], 0.0) + float(score[i])
            row = int(self.rows[photo[i]])
            photos[row] = photos.get(row, 0.0) + float(score[i])
        return Votes(individuals, photos)


@dataclass
class Verification:
    """Geometric verification of a query against one gallery photo: ``inliers`` (count),
    ``pairs`` float32 (n, 4) = query x, y, gallery x, y of the inlier matches."""

    inliers: int
    pairs: np.ndarray


def verify(query: Features, photo: Features, ratio: float = 0.85, reprojection_px: float = 10.0) -> Verification:
    """Ratio-test matches (Lowe 2004) of the query with a gallery photo, then a RANSAC similarity
    transform (rotation, scale, translation; ``cv2.estimateAffinePartial2D``)."""
    empty = Verification(0, np.zeros((0, 4), np.float32))
    if len(query) < 2 or len(photo) < 2:
        return empty
    matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(query.float_descriptors(), photo.float_descriptors(), k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if len(good) < 3:
        return empty
    q = np.float32([query.keypoints[m.queryIdx, :2] for m in good])
    g = np.float32([photo.keypoints[m.trainIdx, :2] for m in good])
    matrix, inl = cv2.estimateAffinePartial2D(q, g, method=cv2.RANSAC, ransacReprojThreshold=reprojection_px,
                                              maxIters=1000, confidence=0.99)
    if matrix is None:
        return empty
    keep = inl.ravel().astype(bool)
    if not plausible(matrix, q[keep], g[keep]):
        return empty
    return Verification(int(keep.sum()), np.hstack([q[keep], g[keep]]))


def plausible(matrix: np.ndarray, q: np.ndarray, g: np.ndarray) -> bool:
    """False for a degenerate RANSAC fit: a scale outside :data:`MAX_SCALE_CHANGE` (many query points
    squeezed onto a few photo points), a rotation beyond :data:`MAX_ROTATION_DEG` (the lines of the
    drawn matches cross: upright photos of one whale do not turn), or inliers that do not spread at least :data:`MIN_SPREAD_PX`
    (standard deviation along both axes, in prepared-photo pixels) over both photos, or fewer than 3
    distinct photo points. ``matrix`` (2, 3) similarity transform; ``q``, ``g`` float32 (n, 2) inliers."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if not 1 / MAX_SCALE_CHANGE <= scale <= MAX_SCALE_CHANGE or len(q) < 3:
        return False
    if abs(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))) > MAX_ROTATION_DEG:
        return False
    if len(np.unique(np.round(g), axis=0)) < 3:
        return False
    return bool(min(q.std(0).min(), g.std(0).min()) >= MIN_SPREAD_PX)


def rank_and_verify(index: FeatureIndex, variants: list[Features], photo: Callable[[int], Features],
                    verify_first: int, lnbnn_k: int = 2, photos_verified: int = 2
                    ) -> tuple[list[tuple[str, float]], dict[str, int], dict[str, tuple[int, Verification, int]]]:
    """LNBNN ranking of a query's variants (each individual keeps its best variant's votes) and
    RANSAC verification of the first ``verify_first`` individuals on their ``photos_verified``
    best-voted photos (``photo(row)`` gives a gallery photo's features).

    Returns (ranked [(whale_id, votes)], inliers {whale_id: best photo's inliers},
    best {whale_id: (row, Verification, variant index)}).
    """
    scores: dict[str, float] = {}
    photos: dict[str, list[tuple[float, int, int]]] = {}
    for v, feats in enumerate(variants):
        votes = index.lnbnn(feats, lnbnn_k)
        for w, s in votes.individuals.items():
            scores[w] = max(scores.get(w, 0.0), s)
        for row, s in votes.photos.items():
            photos.setdefault(index.label_of[row], []).append((s, row, v))
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    inliers: dict[str, int] = {}
    best: dict[str, tuple[int, Verification, int]] = {}
    for w, _ in ranked[:verify_first]:
        for _, row, v in sorted(photos.get(w, []), reverse=True)[:photos_verified]:
            check = verify(variants[v], photo(row))
            if w not in best or check.inliers > best[w][1].inliers:
                best[w] = (row, check, v)
        inliers[w] = best[w][1].inliers if w in best else 0
    return ranked, inliers, best


def decide_new_whale(ranked: list[tuple[str, float]], ratio_threshold: float) -> bool:
    """True when ``new_whale`` should come first: no votes, or the best individual's votes are less
    than ``ratio_threshold`` times the second's (one individual with votes counts as accepted)."""
    if not ranked or ranked[0][1] <= 0:
        return True
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    return ranked[0][1] < ratio_threshold * second


def rerank(ranked: list[tuple[str, float]], inliers: dict[str, int], weight: float,
           shortlist: int) -> list[tuple[str, float]]:
    """The first ``shortlist`` individuals re-scored as votes x (1 + ``weight`` x inliers) and
    re-sorted (``weight`` 0 keeps the LNBNN order); the rest follow unchanged."""
    if not weight:
        return ranked
    head = sorted(((w, s * (1 + weight * inliers.get(w, 0))) for w, s in ranked[:shortlist]), key=lambda kv: -kv[1])
    return head + ranked[shortlist:]


def five_predictions(ranked: list[tuple[str, float]], new_first: bool) -> list[str]:
    """Kaggle's 5 answers: ``new_whale`` first (then the 4 best) or second (after the best)."""
    ids = [w for w, _ in ranked[:5]]
    out = [NEW_WHALE] + ids if new_first or not ids else ids[:1] + [NEW_WHALE] + ids[1:]
    return out[:5]
