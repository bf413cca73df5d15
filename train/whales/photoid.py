"""Offline evaluation and calibration of the local-feature whale identification.

    python -m train.whales.photoid --data ../shared/data/whales [--step 1] [--write-meta]

Uses exactly the served functions (:mod:`geovision.photoid`): features of every photo, a
gallery of the split's training photos (top views and side views apart), LNBNN votes for
each validation query, RANSAC verification of the shortlist. Prints, for each method, MAP@5,
top-1/5/20 of the known queries and the ``new_whale`` precision/recall, beside the
"new_whale + 4 most common individuals" baselines, chooses the ``new_whale`` ratio threshold by
grid search on this split, and with ``--write-meta`` records all of it in
``models/whales/meta.json`` under ``photoid``.
"""
from __future__ import annotations

import argparse
import json
import pickle
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from geovision import metrics, photoid
from geovision.checkpoint import write_meta
from geovision.metrics import NEW_WHALE, map_at_5
from geovision.whales import image_folder, partition

from . import data as wd

SHORTLIST = 20        #: individuals verified (and returned as the shortlist)
PHOTOS_VERIFIED = 2   #: best-voted photos per shortlisted individual that are verified
LNBNN_K = 2           #: neighbours per query descriptor (1, 2, 4 measured: 2 best on half the split)
RATIO_GRID = np.round(np.arange(1.0, 6.001, 0.05), 2)


def figures(truths: list[str], ranked: list[list[tuple[str, float]]], new_first: list[bool]) -> dict:
    """MAP@5, known top-1/5/20 and new_whale precision/recall of one method."""
    known = [i for i, t in enumerate(truths) if t != NEW_WHALE]
    preds = [photoid.five_predictions(r, n) for r, n in zip(ranked, new_first)]
    said_new = [p[0] == NEW_WHALE for p in preds]
    is_new = [t == NEW_WHALE for t in truths]
    tp = sum(a and b for a, b in zip(said_new, is_new))
    out = {"map_at_5": map_at_5(truths, preds),
           **{f"top{k}_known": float(np.mean([truths[i] in [w for w, _ in ranked[i][:k]] for i in known]))
              for k in (1, 5, 20)},
           "new_whale_precision": tp / max(1, sum(said_new)), "new_whale_recall": tp / max(1, sum(is_new))}
    return {k: round(v, 4) for k, v in out.items()}


def calibrate(truths: list[str], ranked: list[list[tuple[str, float]]]) -> tuple[float, dict]:
    """The ratio threshold of :func:`geovision.photoid.decide_new_whale` maximising MAP@5 (ties: lowest)."""
    figure_at = lambda t: figures(truths, ranked, [photoid.decide_new_whale(r, t) for r in ranked])  # noqa: E731
    best_t, _ = metrics.best_threshold(RATIO_GRID, lambda t: figure_at(t)["map_at_5"])
    return best_t, figure_at(best_t)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", type=Path, default=wd.SPLIT_FILE)
    parser.add_argument("--step", type=int, default=1, help="every STEP-th query (quick trials)")
    parser.add_argument("--write-meta", action="store_true")
    parser.add_argument("--threshold", type=float, help="score with this ratio threshold (and --rerank-weight) "
                        "instead of calibrating: what the served model does")
    parser.add_argument("--rerank-weight", type=float, default=0.0)
    parser.add_argument("--model", type=Path, default=Path("models/whales"), help="folder of meta.json")
    parser.add_argument("--no-mask", action="store_true", help="ablation: features of the whole photo")
    parser.add_argument("--one-group", action="store_true",
                        help="ablation: every viewpoint against every other, right views not mirrored")
    parser.add_argument("--dump", type=Path, help="also save queries, ranked shortlists and inliers (pickle) "
                        "for re-ranking trials without recomputing features")
    args = parser.parse_args(argv)

    rows = wd.read_rows(args.data)
    train, queries, _ = partition(rows, wd.read_split(args.split))
    queries = queries[::args.step]
    folder = image_folder(args.data)
    t0 = time.time()
    feats: dict[str, photoid.Features] = {}
    for r in tqdm(train + queries, desc="local features", unit="photo", mininterval=5):
        with Image.open(folder / r["Image"]) as im:
            feats[r["Image"]] = photoid.extract_features(
                im, mirror=r.get("viewpoint") == "right" and not args.one_group, body_only=not args.no_mask)
    extract_s = time.time() - t0

    def group_of(row: dict) -> str:
        return "all" if args.one_group else photoid.viewpoint_group(row.get("viewpoint", "top"))

    groups = {}
    for g in ({"all"} if args.one_group else ("top", "side")):
        members = [i for i, r in enumerate(train) if group_of(r) == g]
        groups[g] = photoid.FeatureIndex(members, [feats[train[i]["Image"]] for i in members],
                                         [train[i]["Id"] for i in members])
    truths, ranked, verified, times = [], [], [], []
    for q in tqdm(queries, desc="identifying", unit="query", mininterval=5):
        t = time.time()
        qf = feats[q["Image"]]
        r, inl, _ = photoid.rank_and_verify(groups[group_of(q)], [qf],
                                            lambda row: feats[train[row]["Image"]], SHORTLIST, LNBNN_K,
                                            PHOTOS_VERIFIED)
        times.append(time.time() - t)
        truths.append(q["truth"])
        ranked.append(r)
        verified.append(inl)

    if args.dump:
        with open(args.dump, "wb") as fh:
            pickle.dump({"queries": queries, "truths": truths, "ranked": ranked, "verified": verified}, fh)
    counts = Counter(r["Id"] for r in train)
    common = [w for w, _ in counts.most_common(4)]
    peek = [w for w, _ in Counter(t for t in truths if t != NEW_WHALE).most_common(4)]
    table = {"baseline new_whale + 4 most common gallery individuals":
             figures(truths, [[(w, 0.0) for w in common]] * len(truths), [True] * len(truths)),
             "baseline new_whale + 4 most common query individuals (peeks at the answers)":
             figures(truths, [[(w, 0.0) for w in peek]] * len(truths), [True] * len(truths))}
    if args.threshold is not None:
        rr = [photoid.rerank(r, v, args.rerank_weight, SHORTLIST) for r, v in zip(ranked, verified)]
        fig = figures(truths, rr, [photoid.decide_new_whale(r, args.threshold) for r in rr])
        print(json.dumps(fig))
        return {"metrics": fig, "predictions": [photoid.five_predictions(r, photoid.decide_new_whale(
            r, args.threshold)) for r in rr], "images": [q["Image"] for q in queries]}
    chosen = {}
    for name, weight in (("LNBNN upright RootSIFT", None), ("LNBNN + RANSAC inliers (w=0.1)", 0.1),
                         ("LNBNN + RANSAC inliers (w=0.3)", 0.3)):
        rr = ranked if weight is None else [photoid.rerank(r, v, weight, SHORTLIST) for r, v in zip(ranked, verified)]
        threshold, fig = calibrate(truths, rr)
        table[name] = {**fig, "ratio_threshold": threshold}
        chosen[name] = (threshold, fig, weight)
    served = max((n for n in chosen), key=lambda n: chosen[n][1]["map_at_5"])
    for name, fig in table.items():
        print(f"{name:78s} " + " ".join(f"{k}={v}" for k, v in fig.items()))
    threshold, fig, weight = chosen[served]
    result = {"method": served, "ratio_threshold": threshold, "rerank_weight": weight or 0.0,
              "lnbnn_k": LNBNN_K, "shortlist": SHORTLIST, "photos_verified": PHOTOS_VERIFIED,
              "val_queries": len(truths), "val_new_whale_queries": truths.count(NEW_WHALE),
              "metrics": fig, "table": table,
              "threshold_source": f"grid {RATIO_GRID[0]}..{RATIO_GRID[-1]} step 0.05 maximising MAP@5 on the split",
              "seconds_per_query_offline": round(float(np.median(times)), 3),
              "feature_extraction_s": round(extract_s, 1),
              "command": "python -m train.whales.photoid --data ../shared/data/whales --write-meta"}
    print(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=1))
    if args.write_meta:
        meta = json.loads((args.model / "meta.json").read_text())
        meta["photoid"] = result
        write_meta(args.model, meta)
    return result


if __name__ == "__main__":
    main()
