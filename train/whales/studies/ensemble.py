"""Several exported whale embeddings as one: each L2-normalised, concatenated and scaled by
1/sqrt(n), so the cosine of the joined vectors is the mean of the models' cosines; measured alone
and fused with the served local-feature votes, as :mod:`train.whales.fusion` measures one model
(a study: nothing here is served).

    python -m train.whales.studies.ensemble --data ../shared/data/whales --dump runs/photoid_val.pkl \\
        --model models/whales --also runs/whales_lite2/model [--out runs/ensemble.json]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fusion import arguments, embed_split, measure, report


def join(embeddings: list[np.ndarray]) -> np.ndarray:
    """L2-normalised embeddings (N, D_i) of n models -> (N, sum D_i), unit length: the inner product
    of two joined rows is the mean of the models' cosines."""
    return np.hstack(embeddings) / np.sqrt(len(embeddings))


def joined(models: list[Path], data: Path, tta: bool = False) -> tuple:
    """:func:`embed_split` of every model, the embeddings joined (gallery (G, sum D), queries (Q, sum D))."""
    splits = [embed_split(m, data, tta) for m in models]
    return splits[0][0], splits[0][1], join([s[2] for s in splits]), join([s[3] for s in splits])


def main(argv: list[str] | None = None) -> dict:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--also", type=Path, nargs="+", required=True, help="more exported embedding folders")
    parser.add_argument("--tta", action="store_true", help="flip test-time augmentation for every model")
    args = parser.parse_args(argv)
    truths, _, _, table = measure(args, joined([args.model, *args.also], args.data, args.tta))
    return report(args, truths, table)


if __name__ == "__main__":
    main()
