"""Fixtures: a tiny TorchScript salt model, the app bound to it, client and runner."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flask_migrate import upgrade
from PIL import Image

from app import create_app

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


class BrightIsSalt(torch.nn.Module):
    """Tiny stand-in segmenter: salt probability = sigmoid(20 * normalised pixel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(20.0 * x)


def write_tiny_salt_model(folder: Path) -> Path:
    """Write a scripted ``BrightIsSalt`` and its meta.json into ``folder/salt``."""
    target = folder / "salt"
    target.mkdir(parents=True, exist_ok=True)
    torch.jit.script(BrightIsSalt()).save(str(target / "model.pt"))
    meta = {"task": "salt", "name": "tiny-bright-is-salt", "version": "test", "input_shape": [1, 128, 128],
            "tile_size": 101, "normalization": {"scale": 1 / 255, "mean": [0.5], "std": [0.25]},
            "threshold": 0.5, "metrics": {"val_tgs_metric": 0.0}}
    (target / "meta.json").write_text(json.dumps(meta))
    return folder


ROCK_COLOURS = {"andesite": (200, 40, 40), "gneiss": (40, 200, 40), "marble": (230, 230, 230),
                "quartzite": (40, 40, 200), "rhyolite": (200, 200, 40), "schist": (40, 40, 40)}


def make_rock_folder(root: Path, per_class: int = 8, seed: int = 0) -> Path:
    """Synthetic Geological-Similarity layout: ``<class>/<class>.<n>.jpg``, 28x28, class colour + noise."""
    rng = np.random.default_rng(seed)
    for label, colour in ROCK_COLOURS.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.clip(np.array(colour) + rng.normal(0, 25, (28, 28, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / label / f"{label}.{i:03d}.jpg", quality=95)
    return root


@pytest.fixture(scope="session")
def rock_folder(tmp_path_factory) -> Path:
    return make_rock_folder(tmp_path_factory.mktemp("rocks-data"))


def whale_photo(whale: int, encounter: int, photo: int, size: tuple[int, int] = (84, 230)) -> np.ndarray:
    """uint8 (H, W, 3) synthetic top-down whale: a grey ellipse on dark water with white scars
    whose places depend on the individual, jittered per encounter and photo."""
    w, h = size
    rng = np.random.default_rng(1000 * whale + 10 * encounter + photo)
    yy, xx = np.mgrid[0:h, 0:w]
    body = ((xx - w / 2) / (w * 0.42)) ** 2 + ((yy - h / 2) / (h * 0.46)) ** 2 <= 1
    img = np.full((h, w, 3), 60, np.float64) + rng.normal(0, 6, (h, w, 3))
    img[body] = 150 + 10 * encounter
    scars = np.random.default_rng(whale).uniform(0.25, 0.75, (4, 2))
    for sx, sy in scars:
        cx, cy = int(sx * w) + rng.integers(-2, 3), int(sy * h) + rng.integers(-2, 3)
        img[max(0, cy - 12):cy + 12, max(0, cx - 1):cx + 2] = 250
    return np.clip(img, 0, 255).astype(np.uint8)


def make_whale_folder(root: Path, whales: int = 8, encounters: int = 2, photos: int = 2) -> Path:
    """Synthetic photo-ID layout: ``train.csv``, ``metadata.csv`` and ``images/*.jpg``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for wh in range(whales):
        for enc in range(encounters if wh % 3 else 1):
            for ph in range(photos):
                name = f"w{wh:02d}e{enc}p{ph}.jpg"
                Image.fromarray(whale_photo(wh, enc, ph)).save(root / "images" / name, quality=92)
                rows.append((name, f"whale{wh:02d}", f"whale{wh:02d}-{enc}"))
    (root / "train.csv").write_text("Image,Id\n" + "".join(f"{n},{i}\n" for n, i, _ in rows))
    (root / "metadata.csv").write_text("Image,Id,viewpoint,encounter_id\n"
                                       + "".join(f"{n},{i},top,{e}\n" for n, i, e in rows))
    return root


@pytest.fixture(scope="session")
def whale_folder(tmp_path_factory) -> Path:
    return make_whale_folder(tmp_path_factory.mktemp("whales-data"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, rock_folder, whale_folder) -> Path:
    """Tiny salt model plus rocks/similarity and whales models from dry-run trainings."""
    from train.rocks import RocksTrainConfig, train_rocks
    from train.whales import WhalesTrainConfig, train_whales

    folder = write_tiny_salt_model(tmp_path_factory.mktemp("models"))
    train_rocks(RocksTrainConfig(data=str(rock_folder), output=str(folder), dry_run=True,
                                 run_dir=str(tmp_path_factory.mktemp("rocks-run"))))
    train_whales(WhalesTrainConfig(data=str(whale_folder), output=str(folder / "whales"), dry_run=True,
                                   run_dir=str(tmp_path_factory.mktemp("whales-run"))))
    return folder


def make_app(model_dir: Path, tmp_path: Path, **overrides):
    config = {"TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "test",
              "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.db'}",
              "MODEL_DIR": str(model_dir), "UPLOAD_FOLDER": str(tmp_path / "uploads"),
              "GALLERY_FOLDER": str(tmp_path / "gallery"),
              "MAX_BATCH_SIZE": 8, "MAX_BATCH_DELAY_MS": 5, **overrides}
    app = create_app(config, wait_for_models=True)
    with app.app_context():
        upgrade()
    return app


@pytest.fixture
def app(tiny_model_dir, tmp_path):
    app = make_app(tiny_model_dir, tmp_path)
    yield app
    app.extensions["engine"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def png_bytes(array: np.ndarray, mode: str | None = None, fmt: str = "PNG", **save) -> bytes:
    """Encode a uint8/uint16 array as an image file in memory."""
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, fmt, **save) if mode else Image.fromarray(array).save(buf, fmt, **save)
    return buf.getvalue()


def half_bright_tile(size: tuple[int, int] = (101, 101)) -> np.ndarray:
    """uint8 image: left half 230 (salt for the tiny model), right half 20."""
    img = np.full(size, 20, np.uint8)
    img[:, : size[1] // 2] = 230
    return img


def fail_nth_batch(monkeypatch, n: int, task: str) -> dict:
    """Make the ``n``-th call of any dynamic batcher raise ``QueueFullError`` (a full queue, 503);
    the other calls run the model. Returns the call counter ``{"n": calls so far}``."""
    from app.engine import QueueFullError
    from app.engine.batcher import DynamicBatcher

    real = DynamicBatcher.__call__
    calls = {"n": 0}

    def nth_fails(self, inputs, timeout=None):
        calls["n"] += 1
        if calls["n"] == n:
            raise QueueFullError(f"{task}: request queue is full")
        return real(self, inputs, timeout=timeout)

    monkeypatch.setattr(DynamicBatcher, "__call__", nth_fails)
    return calls
