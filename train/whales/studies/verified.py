"""The embedding's shortlist, verified by local features, on the validation split.

    python -m train.whales.studies.verified --data ../shared/data/whales --model runs/whales_ft4/export \\
        [--shortlist 20] [--photos 2] [--dump runs/verified_val.pkl] [--out docs/whales_verified.json]

The embedding ranks individuals well in its first 20 (known top-20 about 0.3) but orders them
poorly (top-1 about 0.06); RANSAC-verified local features are precise when they find a match
(served top-1 0.08 of a shortlist with top-20 0.15). Here each query's embedding shortlist of
``--shortlist`` individuals is verified on each one's ``--photos`` most similar photos
(:func:`geovision.photoid.verify`, the served check), and the individuals are re-scored as
``cosine + weight x min(inliers, cap) / cap``. The weight and the ``new_whale`` threshold are
chosen on the split and scored by 2-fold cross-validation by individual
(:func:`train.whales.fusion.evaluate`).
"""
from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from geovision import photoid
from geovision.whales import image_folder

from ..fusion import embed_split, evaluate
from ..loop import groups

CAP = 20                                  #: inliers at which the verification bonus saturates
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)


def shortlist(q_emb: np.ndarray, g_emb: np.ndarray, g_ids: np.ndarray, same: np.ndarray, k: int,
              photos: int) -> list[list[tuple[str, float, list[int]]]]:
    """Per query: the ``k`` best individuals [(id, best cosine, their ``photos`` best gallery rows)]."""
    out = []
    for i in range(len(q_emb)):
        sims = np.where(same[i], g_emb @ q_emb[i], -2.0)
        order = np.argsort(-sims, kind="stable")
        picked: dict[str, list] = {}
        for row in order:
            if sims[row] <= -2.0:
                break
            w = str(g_ids[row])
            if w not in picked:
                if len(picked) == k:
                    continue
                picked[w] = [float(sims[row]), []]
            if len(picked[w][1]) < photos:
                picked[w][1].append(int(row))
            if len(picked) == k and all(len(v[1]) >= photos for v in picked.values()):
                break
        out.append([(w, s, rows) for w, (s, rows) in picked.items()])
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--shortlist", type=int, default=20)
    parser.add_argument("--photos", type=int, default=2)
    parser.add_argument("--dump", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    train, queries, g_emb, q_emb = embed_split(args.model, args.data)
    g_ids = np.array([r["Id"] for r in train])
    same = np.array(groups(queries))[:, None] == np.array(groups(train))[None, :]
    lists = shortlist(q_emb, g_emb, g_ids, same, args.shortlist, args.photos)
    folder = image_folder(args.data)
    needed = {train[row]["Image"]: train[row] for cands in lists for _, _, rows in cands for row in rows}
    needed.update({q["Image"]: q for q in queries})
    feats = {}
    for name, r in tqdm(sorted(needed.items()), desc="local features", mininterval=10):
        with Image.open(folder / name) as im:
            feats[name] = photoid.extract_features(im, mirror=r.get("viewpoint") == "right")
    started, inliers = time.time(), []
    for q, cands in tqdm(list(zip(queries, lists)), desc="verifying", mininterval=10):
        inliers.append({w: max(photoid.verify(feats[q["Image"]], feats[train[row]["Image"]]).inliers for row in rows)
                        for w, _, rows in cands})
    seconds = (time.time() - started) / max(1, len(queries))
    if args.dump:
        with open(args.dump, "wb") as fh:
            pickle.dump({"queries": queries, "lists": [[(w, s) for w, s, _ in c] for c in lists], "inliers": inliers}, fh)
    truths = [q["truth"] for q in queries]
    individuals = sorted({q["Id"] for q in queries})
    fold_of = dict(zip(individuals, np.random.default_rng(0).integers(0, 2, len(individuals))))
    folds = np.array([fold_of[q["Id"]] for q in queries])
    table = {}
    for weight in WEIGHTS:
        ranked = [sorted(((w, s + weight * min(inl[w], CAP) / CAP) for w, s, _ in cands), key=lambda kv: -kv[1])
                  for cands, inl in zip(lists, inliers)]
        table[f"embedding shortlist + {weight} x verified inliers"] = evaluate(truths, ranked, folds)
    for name, fig in table.items():
        print(f"{name:55s} " + " ".join(f"{k}={v}" for k, v in fig.items()))
    result = {"model": str(args.model), "shortlist": args.shortlist, "photos": args.photos, "cap": CAP,
              "seconds_per_query_verification": round(seconds, 3), "table": table}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
