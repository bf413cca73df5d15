"""The whale embedding alone and fused with the served local-feature ranking, on the validation split.

    python -m train.whales.photoid --data ../shared/data/whales --threshold 3.4 --rerank-weight 0.3 \\
        --dump runs/photoid_val.pkl
    python -m train.whales.fusion --data ../shared/data/whales --dump runs/photoid_val.pkl \\
        --model runs/whales_lite0/export [--out docs/whales_fusion.json]

``--model`` is an exported embedding (``model.pt`` + ``meta.json``): photos are prepared as the
server prepares them (letterboxed to ``input_shape``, right side views mirrored) and compared
within their viewpoint group. Each row gives MAP@5 and the known queries' top-1/5/20; the
``new_whale`` rule (a threshold on the first candidate's score) and the fusion weight are chosen
on the split, and the same choice is scored by 2-fold cross-validation by individual (chosen on
the queries of one half of the individuals, scored on the other), the honest figure.
"""
from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import torch

from geovision import metrics, photoid
from geovision.checkpoint import load_checkpoint
from geovision.metrics import NEW_WHALE, insert_new_whale, map_at_5
from geovision.whales import fuse_rankings, partition

from . import data as wd
from .loop import groups, identify_all
from .photoid import SHORTLIST

Ranked = list[tuple[str, float]]
WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def embed_split(model_dir: Path, data: Path, tta: bool = False) -> tuple[list[dict], list[dict], np.ndarray, np.ndarray]:
    """(gallery rows, query rows, gallery embeddings (G, D), query embeddings (Q, D)) of the split
    under the exported model (TorchScript ``model.pt``, ``meta.json``); ``tta``: each embedding is
    the normalised mean of the photo's and its mirror image's (flip test-time augmentation)."""
    ckpt = load_checkpoint(model_dir, torch.device("cpu"))
    meta, net = ckpt.meta, ckpt.module
    rows = wd.read_rows(data)
    train, queries, _ = partition(rows, wd.read_split())
    both = train + queries
    images = wd.load_images(data / "images", [r["Image"] for r in both], size=tuple(meta["input_shape"][1:]),
                            mirrored=[r.get("viewpoint") == "right" for r in both])
    mean = torch.tensor(meta["normalization"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["normalization"]["std"]).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), 64):
            x = torch.from_numpy(images[i:i + 64]).permute(0, 3, 1, 2).float().div(255)
            e = net((x - mean) / std)
            if tta:
                e = torch.nn.functional.normalize(e + net((x.flip(3) - mean) / std), dim=1)
            out.append(e.numpy())
    emb = np.concatenate(out)
    return train, queries, emb[:len(train)], emb[len(train):]


def served_predictions(dump: dict, model_dir: Path, data: Path, params: dict) -> list[list[str]]:
    """The five answers of the served ranking for the dump's queries (any subset of the split):
    the local-feature votes re-ranked by inliers, fused with ``model_dir``'s embedding when
    ``params["embedding_weight"]`` is set (``new_whale`` below ``fused_threshold``), else ``new_whale``
    by the votes' ratio threshold: what ``POST /api/v1/whales/identify`` answers."""
    served = [photoid.rerank(r, v, float(params["rerank_weight"]), SHORTLIST)
              for r, v in zip(dump["ranked"], dump["verified"])]
    weight = float(params.get("embedding_weight", 0.0))
    if not weight:
        t = float(params["ratio_threshold"])
        return [photoid.five_predictions(r, photoid.decide_new_whale(r, t)) for r in served]
    train, queries, g_emb, q_emb = embed_split(model_dir, data)
    row_of = {q["Image"]: i for i, q in enumerate(queries)}
    rows = [row_of[q["Image"]] for q in dump["queries"]]
    emb = identify_all(q_emb[rows], g_emb, np.array([r["Id"] for r in train]),
                       groups([queries[i] for i in rows]), groups(train), limit=None)
    return [[w for w, _ in insert_new_whale(fuse_rankings(r, e, weight), float(params["fused_threshold"]))]
            for r, e in zip(served, emb)]


def scores(truths: list[str], ranked: list[Ranked], threshold: float, rows: np.ndarray | None = None) -> dict:
    """MAP@5 with ``new_whale`` inserted below ``threshold`` and the known queries' top-k."""
    rows = np.arange(len(truths)) if rows is None else rows
    t = [truths[i] for i in rows]
    preds = [[w for w, _ in insert_new_whale(ranked[i], threshold)] for i in rows]
    known = [j for j, i in enumerate(rows) if truths[i] != NEW_WHALE]
    tops = {f"top{k}_known": float(np.mean([t[j] in [w for w, _ in ranked[rows[j]][:k]] for j in known]))
            for k in (1, 5, 20)}
    return {"map_at_5": map_at_5(t, preds), **tops}


def best_threshold(truths: list[str], ranked: list[Ranked], rows: np.ndarray) -> float:
    """The ``new_whale`` threshold maximising MAP@5 on ``rows`` (grid of the first scores' quantiles)."""
    grid = np.unique(np.quantile([r[0][1] for r in ranked if r], np.linspace(0, 1, 101)))
    return metrics.best_threshold(grid, lambda g: scores(truths, ranked, g, rows)["map_at_5"])[0]


def evaluate(truths: list[str], ranked: list[Ranked], folds: np.ndarray) -> dict:
    """Figures with the threshold chosen on the whole split, and MAP@5 of the 2-fold choice."""
    ranked = [r[:20] for r in ranked]   # the answers and top-20 need no more (full lists made the grid slow)
    everyone = np.arange(len(truths))
    t = best_threshold(truths, ranked, everyone)
    crossed = []
    for f in (0, 1):
        fit, test = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        chosen = best_threshold(truths, ranked, fit)     # once per fold (inside the loop it ran per query)
        crossed += [[w for w, _ in insert_new_whale(ranked[i], chosen)] for i in test]
    order = np.concatenate([np.flatnonzero(folds == f) for f in (0, 1)])
    fig = {**scores(truths, ranked, t), "threshold": round(t, 4),
           "map_at_5_2fold": map_at_5([truths[i] for i in order], crossed)}
    return {k: round(v, 4) for k, v in fig.items()}


def arguments(description: str) -> argparse.ArgumentParser:
    """The command line shared with :mod:`train.whales.studies.fusion_trials`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--dump", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="exported embedding folder (model.pt, meta.json)")
    parser.add_argument("--rerank-weight", type=float, default=0.3, help="the served RANSAC re-rank weight")
    parser.add_argument("--out", type=Path)
    return parser


def measure(args: argparse.Namespace, split: tuple | None = None) -> tuple[list[str], list[Ranked], np.ndarray, dict]:
    """(truths, the served votes' rankings, each query's fold, the table of served rows): the local
    features alone, the embedding alone and their fusion at each weight of :data:`WEIGHTS`.
    ``split``: :func:`embed_split`'s answer when the caller embedded the photos (default: ``--model``'s)."""
    with open(args.dump, "rb") as fh:
        dump = pickle.load(fh)
    truths = dump["truths"]
    served = [photoid.rerank(r, v, args.rerank_weight, SHORTLIST) for r, v in zip(dump["ranked"], dump["verified"])]
    train, queries, g_emb, q_emb = split if split is not None else embed_split(args.model, args.data)
    if [q["Image"] for q in queries] != [q["Image"] for q in dump["queries"]]:
        raise SystemExit("the dump was made on another split")
    emb = identify_all(q_emb, g_emb, np.array([r["Id"] for r in train]), groups(queries), groups(train), limit=None)
    individuals = sorted({q["Id"] for q in queries})
    fold_of = dict(zip(individuals, np.random.default_rng(0).integers(0, 2, len(individuals))))
    folds = np.array([fold_of[q["Id"]] for q in queries])
    table = {"served local features (LNBNN + RANSAC re-rank), fused score w=0": evaluate(truths, [
        fuse_rankings(r, [], 0.0) for r in served], folds), "embedding alone": evaluate(truths, emb, folds)}
    for w in WEIGHTS:
        table[f"fusion votes/best + {w} x cosine"] = evaluate(truths, [fuse_rankings(r, e, w)
                                                                       for r, e in zip(served, emb)], folds)
    return truths, served, folds, table


def report(args: argparse.Namespace, truths: list[str], table: dict) -> dict:
    """Print ``table`` and write it to ``--out`` (JSON); returns what was written."""
    for name, fig in table.items():
        print(f"{name:70s} " + " ".join(f"{k}={v}" for k, v in fig.items()))
    result = {"dump": str(args.dump), "model": str(args.model), "queries": len(truths),
              "new_whale_queries": sum(t == NEW_WHALE for t in truths), "table": table}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--write-meta", type=Path, metavar="SERVED_META",
                        help="record the best row (by 2-fold MAP@5) as the served ranking in --model's meta.json, "
                             "keeping the local-feature settings of SERVED_META (e.g. models/whales/meta.json)")
    args = parser.parse_args(argv)
    truths, _, _, table = measure(args)
    result = report(args, truths, table)
    if args.write_meta:
        write_served(args.model / "meta.json", json.loads(args.write_meta.read_text())["photoid"], table, args)
    return result


def write_served(meta_path: Path, photoid_params: dict, table: dict, args: argparse.Namespace) -> dict:
    """Set ``meta.json``'s ``photoid`` (the served ranking) and ``metrics`` to the row of ``table``
    with the best 2-fold MAP@5: its fusion weight (0 for the votes alone) and ``new_whale`` threshold."""
    from geovision.checkpoint import write_meta

    from ..common.provenance import git_commit

    name = max(table, key=lambda n: table[n]["map_at_5_2fold"])
    fig = table[name]
    weight = float(name.split("+ ")[1].split(" x")[0]) if name.startswith("fusion") else 0.0
    meta = json.loads(meta_path.read_text())
    meta["photoid"] = {**{k: v for k, v in photoid_params.items() if k != "table"},
                       "method": name, "embedding_weight": weight, "fused_threshold": fig["threshold"],
                       "fusion_table": table, "fusion_command": "python -m train.whales.fusion " + " ".join(
                           f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
                       "evaluated_at_commit": git_commit()}
    # a gallery without local features is answered by the embedding alone: its own threshold, chosen alike
    alone = fig if not weight else table["embedding alone"]
    meta["new_whale_threshold"] = alone["threshold"]
    meta["new_whale_threshold_source"] = ("the embedding alone's row of the fusion table (train.whales.fusion): "
                                          "MAP@5-maximising threshold on the validation split")
    meta["metrics"] = {**meta["metrics"], **{f"val_{k}": v for k, v in fig.items() if k != "threshold"},
                       "val_selection": f"{name}; threshold chosen on the split (2-fold figure beside it)"}
    meta["aggregation"] = f"served ranking: {name}"
    write_meta(meta_path.parent, meta)
    return meta


if __name__ == "__main__":
    main()
