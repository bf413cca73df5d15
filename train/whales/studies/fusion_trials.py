"""Flip TTA, query expansion and database-side augmentation of the whale embedding, measured one by
one, alone and fused with the served local-feature votes (a study: nothing here is served).

    python -m train.whales.studies.fusion_trials --data ../shared/data/whales --dump runs/photoid_val.pkl \\
        --model models/whales [--out docs/whales_fusion_trials.json]

The served rows of :mod:`train.whales.fusion` come first, then each trial's rows, with the same
2-fold MAP@5 by individual.
"""
from __future__ import annotations

import argparse

import numpy as np

from geovision.whales import fuse_rankings

from ..fusion import WEIGHTS, Ranked, arguments, embed_split, evaluate, measure, report
from ..loop import groups, identify_all
from .expansion import expand, same_group


def trials(args: argparse.Namespace, truths: list[str], served: list[Ranked], folds: np.ndarray) -> dict:
    """Rows measured one by one: the embedding with flip TTA, with average query expansion (k=1, 2)
    and database-side augmentation (k=1, 2), alone and fused at each weight of :data:`WEIGHTS`."""
    out = {}
    for tta in (False, True):
        train, queries, g_emb, q_emb = embed_split(args.model, args.data, tta)
        ids, qg, gg = np.array([r["Id"] for r in train]), groups(queries), groups(train)
        variants = {"": (q_emb, g_emb)} if not tta else {"flip TTA": (q_emb, g_emb)}
        for k in (1, 2):
            variants[f"{'flip TTA + ' if tta else ''}QE k={k}"] = (expand(q_emb, g_emb, k, same_group(qg, gg)), g_emb)
            dba = expand(g_emb, g_emb, k, same_group(gg, gg), skip_self=True)
            variants[f"{'flip TTA + ' if tta else ''}DBA k={k}"] = (q_emb, dba)
        for name, (q, g) in variants.items():
            if not name:
                continue
            emb = identify_all(q, g, ids, qg, gg, limit=None)
            out[f"embedding alone, {name}"] = evaluate(truths, emb, folds)
            for w in WEIGHTS:
                out[f"fusion votes/best + {w} x cosine, {name}"] = evaluate(
                    truths, [fuse_rankings(r, e, w) for r, e in zip(served, emb)], folds)
    return out


def main(argv: list[str] | None = None) -> dict:
    args = arguments(__doc__.splitlines()[0]).parse_args(argv)
    truths, served, folds, table = measure(args)
    return report(args, truths, {**table, **trials(args, truths, served, folds)})


if __name__ == "__main__":
    main()
