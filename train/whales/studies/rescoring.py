"""Trials on top of the served whale ranking: calibrated ``new_whale``, priors, embedding fusion.

    python -m train.whales.photoid --data ../shared/data/whales --threshold 3.4 --rerank-weight 0.3 \\
        --dump runs/photoid_val.pkl
    python -m train.whales.studies.rescoring --data ../shared/data/whales --dump runs/photoid_val.pkl \\
        [--encoder runs/whales_ssl/encoder.pt] [--out docs/whales_rescoring.json]

Each trial starts from the served LNBNN + RANSAC ranking of the validation queries (the dump)
and prints MAP@5 and the known queries' top-1/5/20. Trials that fit something (the
``new_whale`` ratio threshold, the logistic calibration) are scored by 2-fold cross-validation
by individual: fitted on the queries of one half of the individuals, scored on the other.

* ``new_whale`` by expected AP@5: every candidate, ``new_whale`` included, ranked by a
  calibrated probability (logistic regressions of "query is new" and "best candidate is right"
  on the vote ratio, inliers and votes), which maximises expected AP@5 (one right answer per query).
* encounter prior: votes x (encounters of the individual) ** a.
* the answers after the first k filled with the gallery's most common individuals.
* with ``--encoder``: the embedding's own ranking (best photo cosine per individual), a score
  fusion (votes / best votes + lambda x cosine) and reciprocal-rank fusion (Cormack et al., SIGIR 2009).
"""
from __future__ import annotations

import argparse
import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np

from geovision import metrics, photoid
from geovision.metrics import NEW_WHALE, map_at_5

from ..photoid import RATIO_GRID, SHORTLIST

Ranked = list[tuple[str, float]]


def tops(truths: list[str], ranked: list[Ranked]) -> dict:
    known = [i for i, t in enumerate(truths) if t != NEW_WHALE]
    return {f"top{k}_known": round(float(np.mean([truths[i] in [w for w, _ in ranked[i][:k]] for i in known])), 4)
            for k in (1, 5, 20)}


def ratio_predictions(ranked: list[Ranked], threshold: float) -> list[list[str]]:
    return [photoid.five_predictions(r, photoid.decide_new_whale(r, threshold)) for r in ranked]


def best_threshold(truths: list[str], ranked: list[Ranked], rows: np.ndarray) -> float:
    return metrics.best_threshold(RATIO_GRID, lambda t: map_at_5([truths[i] for i in rows],
                                                                  ratio_predictions([ranked[i] for i in rows], t)))[0]


def confidence_features(ranked: Ranked, inliers: dict[str, int]) -> list[float]:
    """log vote ratio 1st/2nd, log(1 + inliers) of the 1st and 2nd, log(1 + votes of the 1st)."""
    s = [v for _, v in ranked[:2]] + [0.0, 0.0]
    i1 = inliers.get(ranked[0][0], 0) if ranked else 0
    i2 = inliers.get(ranked[1][0], 0) if len(ranked) > 1 else 0
    return [float(np.log((s[0] + 1e-6) / (s[1] + 1e-6))), float(np.log1p(i1)), float(np.log1p(i2)),
            float(np.log1p(s[0]))]


def expected_ap_predictions(p_new: float, p_first: float, p_rank: list[float], ranked: Ranked) -> list[str]:
    """Five answers sorted by probability: ``new_whale`` (p_new) and the candidates, the first with
    (1 - p_new) * p_first, the j-th with (1 - p_new) * p_rank[j]."""
    cands = [(NEW_WHALE, p_new)] + [(w, (1 - p_new) * (p_first if j == 0 else p_rank[j]))
                                    for j, (w, _) in enumerate(ranked[:5])]
    return [w for w, _ in sorted(cands, key=lambda c: -c[1])][:5]


def probability(x: np.ndarray, y: np.ndarray):
    """P(y | features) by logistic regression; the constant rate when ``y`` holds one class only."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        rate = float(np.mean(y)) if len(y) else 0.0
        return lambda row: rate
    model = LogisticRegression().fit(x, y)
    return lambda row: float(model.predict_proba(row.reshape(1, -1))[0, 1])


def cross_validated(truths: list[str], ranked: list[Ranked], inliers: list[dict], folds: np.ndarray) -> dict:
    """MAP@5 of the ratio threshold and of the logistic expected-AP order, each fitted on the other fold."""
    x = np.array([confidence_features(r, v) for r, v in zip(ranked, inliers)])
    is_new = np.array([t == NEW_WHALE for t in truths])
    pos = np.array([next((j for j, (w, _) in enumerate(r[:5]) if w == t), 9) for r, t in zip(ranked, truths)])
    ratio, logistic = [None] * len(truths), [None] * len(truths)
    for f in np.unique(folds):
        fit, test = np.where(folds != f)[0], np.where(folds == f)[0]
        threshold = best_threshold(truths, ranked, fit)
        known = fit[~is_new[fit]]
        p_new, p_first = probability(x[fit], is_new[fit]), probability(x[known], pos[known] == 0)
        p_rank = [float(np.mean(pos[known] == j)) for j in range(5)]
        for i in test:
            ratio[i] = ratio_predictions([ranked[i]], threshold)[0]
            logistic[i] = expected_ap_predictions(p_new(x[i]), p_first(x[i]), p_rank, ranked[i])
    return {"ratio threshold, 2-fold": round(map_at_5(truths, ratio), 4),
            "logistic expected-AP order, 2-fold": round(map_at_5(truths, logistic), 4)}


def embedding_ranking(encoder: Path, data: Path, truths: list[str], flip_tta: bool = False,
                      query_expansion: int = 0) -> list[Ranked]:
    """Each query's individuals by the best gallery photo's cosine under an encoder state dict
    (``flip_tta``: embeddings averaged with the mirror image's; ``query_expansion`` k: the query
    re-issued as itself plus its k nearest gallery photos weighted by cosine cubed)."""
    import torch

    from geovision.whales import rank_individuals

    from ..loop import _load, embed
    from ..model import WhaleNet

    rows, queries, tr_x, va_x = _load(argparse.Namespace(data=str(data), dry_run=False, seed=42))
    assert [q["truth"] for q in queries] == truths, "the dump is of another split"
    mean = torch.tensor(tr_x.reshape(-1, 3).mean(0) / 255, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(tr_x.reshape(-1, 3).std(0) / 255, dtype=torch.float32).view(1, 3, 1, 1)
    net = WhaleNet(512, 32)
    state = torch.load(encoder, map_location="cpu")
    net.load_state_dict(state.get("net", state))
    def both(x: np.ndarray) -> np.ndarray:
        e = embed(net, x, mean, std, "cpu")
        if flip_tta:                       # mean of the photo's and its mirror image's embeddings
            e = e + embed(net, np.ascontiguousarray(x[:, :, ::-1]), mean, std, "cpu")
            e /= np.linalg.norm(e, axis=1, keepdims=True)
        return e

    q, g = both(va_x), both(tr_x)
    sims = q @ g.T
    if query_expansion:                   # alpha-QE (Radenovic et al., TPAMI 2018): alpha 3
        top = np.argsort(-sims, axis=1)[:, :query_expansion]
        w = np.take_along_axis(np.maximum(sims, 0), top, axis=1) ** 3
        q = q + np.einsum("qk,qkd->qd", w, g[top])
        sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ g.T
    ids = np.array([r["Id"] for r in rows])
    return [rank_individuals(row, ids) for row in sims]


def fuse(ranked: list[Ranked], emb: list[Ranked], weight: float) -> list[Ranked]:
    out = []
    for r, e in zip(ranked, emb):
        top = r[0][1] if r and r[0][1] > 0 else 1.0
        votes, cos = dict(r), dict(e)
        cands = set(list(votes)[:200]) | {w for w, _ in e[:50]}
        out.append(sorted(((w, votes.get(w, 0.0) / top + weight * max(0.0, cos.get(w, 0.0))) for w in cands),
                          key=lambda kv: (-kv[1], kv[0])))
    return out


def reciprocal_rank_fusion(ranked: list[Ranked], emb: list[Ranked], k: int = 60) -> list[Ranked]:
    out = []
    for r, e in zip(ranked, emb):
        score: dict[str, float] = {}
        for lst in (r[:200], e[:200]):
            for j, (w, _) in enumerate(lst):
                score[w] = score.get(w, 0.0) + 1.0 / (k + j)
        out.append(sorted(score.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--dump", type=Path, required=True)
    parser.add_argument("--encoder", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--model", type=Path, default=Path("models/whales"),
                        help="folder of meta.json (its photoid.rerank_weight is the served re-rank)")
    args = parser.parse_args(argv)
    weight = json.loads((args.model / "meta.json").read_text())["photoid"]["rerank_weight"]
    with open(args.dump, "rb") as fh:
        dump = pickle.load(fh)
    truths, queries = dump["truths"], dump["queries"]
    served = [photoid.rerank(r, v, weight, SHORTLIST) for r, v in zip(dump["ranked"], dump["verified"])]
    everyone = np.arange(len(truths))
    individuals = sorted({q["Id"] for q in queries})
    fold_of = dict(zip(individuals, np.random.default_rng(0).integers(0, 2, len(individuals))))
    folds = np.array([fold_of[q["Id"]] for q in queries])
    from geovision.whales import partition

    from .. import data as wd
    train, _, _ = partition(wd.read_rows(args.data), wd.read_split())
    common = [w for w, _ in Counter(r["Id"] for r in train).most_common(5)]
    encounters = Counter(i for i, _ in {(r["Id"], r["encounter_id"]) for r in train})

    def row(ranked: list[Ranked], base: list[Ranked] | None = None) -> dict:
        base = base or ranked
        t = max(RATIO_GRID, key=lambda t: map_at_5(truths, [photoid.five_predictions(
            r, photoid.decide_new_whale(b, t)) for r, b in zip(ranked, base)]))
        preds = [photoid.five_predictions(r, photoid.decide_new_whale(b, t)) for r, b in zip(ranked, base)]
        return {"map_at_5": round(map_at_5(truths, preds), 4), **tops(truths, ranked), "ratio_threshold": float(t)}

    table = {f"served: LNBNN + RANSAC re-rank (w={weight}), threshold chosen on the split": row(served)}
    table["served, threshold and logistic 2-fold"] = cross_validated(truths, served, dump["verified"], folds)
    t = best_threshold(truths, served, everyone)
    for k in (2, 4):
        preds = [(p[:k] + [w for w in common if w not in p[:k]])[:5] for p in ratio_predictions(served, t)]
        table[f"first {k} answers, then the most common individuals"] = {"map_at_5": round(map_at_5(truths, preds), 4)}
    for a in (0.1, 0.3):
        prior = [sorted(((w, s * encounters[w] ** a) for w, s in r[:SHORTLIST]), key=lambda kv: -kv[1])
                 + r[SHORTLIST:] for r in served]
        table[f"encounter prior, votes x encounters^{a}"] = row(prior, served)
    if args.encoder:
        table[f"embedding alone, flip TTA ({args.encoder})"] = row(embedding_ranking(args.encoder, args.data,
                                                                                      truths, flip_tta=True))
        table["embedding + alpha-QE (k=3)"] = row(embedding_ranking(args.encoder, args.data, truths,
                                                                    query_expansion=3))
        emb = embedding_ranking(args.encoder, args.data, truths)
        table[f"embedding alone ({args.encoder})"] = row(emb)
        for weight in (0.3, 1.0, 3.0):
            table[f"fusion votes/best + {weight} x cosine"] = row(fuse(served, emb, weight), served)
        table["reciprocal-rank fusion (k=60)"] = row(reciprocal_rank_fusion(served, emb), served)
    for name, fig in table.items():
        print(f"{name:70s} " + " ".join(f"{k}={v}" for k, v in fig.items()))
    if args.out:
        args.out.write_text(json.dumps({"dump": str(args.dump), "encoder": str(args.encoder or ""),
                                        "queries": len(truths), "table": table}, indent=1) + "\n")
    return table


if __name__ == "__main__":
    main()
