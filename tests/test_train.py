import csv
import json

import numpy as np
import torch
from PIL import Image

from app.engine.loader import load_checkpoint
from train.rle import rle_encode


def make_synthetic_tgs(folder, n=16, seed=0):
    """A TGS-shaped folder (train.csv, train/images, train/masks) of random blob tiles."""
    rng = np.random.default_rng(seed)
    (folder / "train" / "images").mkdir(parents=True)
    (folder / "train" / "masks").mkdir(parents=True)
    rows = []
    yy, xx = np.mgrid[:101, :101]
    for i in range(n):
        cy, cx, r = rng.integers(20, 80), rng.integers(20, 80), rng.integers(0, 30)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2) if i % 3 else np.zeros((101, 101), bool)
        img = np.clip(rng.normal(100, 20, (101, 101)) + 80 * mask, 0, 255).astype(np.uint8)
        Image.fromarray(np.dstack([img] * 3)).save(folder / "train" / "images" / f"tile{i:02d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "train" / "masks" / f"tile{i:02d}.png")
        rows.append({"id": f"tile{i:02d}", "rle_mask": rle_encode(mask)})
    with open(folder / "train.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "rle_mask"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_flask_train_model_dry_run_exports_a_loadable_checkpoint(runner, tmp_path):
    data = make_synthetic_tgs(tmp_path / "tgs")
    out, run = tmp_path / "out" / "salt", tmp_path / "run"
    result = runner.invoke(args=["train-model", "salt", "--data", str(data), "--dry-run", "--epochs", "1",
                                 "--output", str(out), "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    assert "val_tgs_metric" in result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["input_shape"] == [1, 128, 128] and meta["task"] == "salt"
    assert {"mean", "std"} <= set(meta["normalization"]) and 0 <= meta["threshold"] <= 1
    assert "val_tgs_metric" in meta["metrics"] and meta["command"].startswith("flask train-model")
    ckpt = load_checkpoint(out, torch.device("cpu"))
    with torch.inference_mode():
        probs = ckpt.module(torch.randn(3, 1, 128, 128))
    assert probs.shape == (3, 1, 128, 128)
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0
    assert (run / "metrics.csv").exists() and (run / "args.json").exists()


def test_retune_re_exports_with_min_salt_pixels(runner, tmp_path):
    data = make_synthetic_tgs(tmp_path / "tgs")
    out, run = tmp_path / "out" / "salt", tmp_path / "run"
    common = ["--data", str(data), "--dry-run", "--output", str(out), "--run-dir", str(run)]
    assert runner.invoke(args=["train-model", "salt", *common, "--epochs", "1"]).exit_code == 0
    result = runner.invoke(args=["train-model", "salt", *common, "--retune"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["min_salt_pixels"] in (0, 10, 25, 50, 100) and "--retune" in meta["command"]
