"""Re-export a released rocks classifier so that its output carries the similarity embedding too.

    python -m train.rocks.combine --models models

The rocks and similarity checkpoints of one training share their network (``train.rocks.loop``
exports both from the same ``RockNet``). This checks that the two released networks hold the same
weights, that the combined module gives the released ``models/rocks`` probabilities (max
difference 1e-5) and the ``models/similarity`` embedding, and writes ``models/rocks/model.pt``
as :class:`train.rocks.model.RockClassifier`: the probabilities, then the embedding, so that
the rocks page answers with one forward pass. The rocks
``meta.json`` keeps its metrics and gains ``embedding_columns`` and ``embedding_of`` (the
similarity checkpoint's fingerprint); the weights do not change. New trainings export this form.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .loop import export, rocks_meta
from .model import LABELS, RockClassifier


def combine(models: Path) -> dict:
    """Write the combined rocks checkpoint under ``models/rocks``; returns its meta.
    Raises RuntimeError when the similarity network does not reproduce the rocks probabilities."""
    released = torch.jit.load(str(models / "rocks" / "model.pt")).eval()
    embedder = torch.jit.load(str(models / "similarity" / "model.pt")).eval()
    ours, theirs = released.net.state_dict(), embedder.net.state_dict()
    if ours.keys() != theirs.keys() or not all(torch.equal(ours[k], theirs[k]) for k in ours):
        raise RuntimeError("models/rocks and models/similarity do not share one network: retrain both")
    combined = RockClassifier(released.net).eval()   # its traced head has a forward; the embedder's has none
    with torch.inference_mode():
        example = torch.randn(16, 3, 28, 28)
        before, embedding, after = released(example), embedder(example), combined(example)
    columns = len(LABELS)
    difference = max(float((after[:, :columns] - before[:, :columns]).abs().max()),
                     float((after[:, columns:] - embedding).abs().max()))
    if difference > 1e-5:
        raise RuntimeError(f"the combined output differs from the released models by {difference:.2e}")
    old = json.loads((models / "rocks" / "meta.json").read_text())
    meta = {**old, **rocks_meta(old["metrics"]["val_accuracy"], models),
            "metrics": old["metrics"], "command": old.get("command", ""),
            "combined": "python -m train.rocks.combine --models models: the same weights, the similarity embedding "
                        "appended to the output (one forward pass for the rocks page)"}
    export(combined, models / "rocks", meta)
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    meta = combine(parser.parse_args().models)
    print(json.dumps({k: meta[k] for k in ("output", "embedding_columns", "embedding_of")}, indent=1))


if __name__ == "__main__":
    main()
