"""Fixtures and shared helpers: tiny TorchScript models, the app bound to them, client, runner,
synthetic rocks, whales, SEG-Y surveys and image files."""
from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import segyio
import torch
from flask_migrate import upgrade
from PIL import Image

from app import create_app

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(items) -> None:
    """A test that drives Chromium (the ``browser`` fixture) is marked ``browser`` and ``slow``:
    ``make test-fast`` (``-m "not slow"``) leaves it out wherever it lives."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


def _files(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else {}


@pytest.fixture(scope="session", autouse=True)
def checkout_instance_untouched():
    """No test writes into the checkout's ``instance/`` (each app gets ``tmp_path/instance``)."""
    before = _files(ROOT / "instance")
    yield
    assert _files(ROOT / "instance") == before, "a test wrote into the checkout's instance/ folder"


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


class NearestRockColour(torch.nn.Module):
    """Tiny stand-in rock classifier: softmax over the negative distances between the image's mean
    colour and each class colour of :data:`ROCK_COLOURS` (both normalised as in meta.json)."""

    def __init__(self, colours: torch.Tensor):
        super().__init__()
        self.colours = colours   # (6, 3), normalised

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3))                                   # (N, 3)
        return torch.softmax(-torch.cdist(mean, self.colours) * 4.0, dim=1)


class PooledPixels(torch.nn.Module):
    """Tiny stand-in embedder: average-pool the input to ``grid`` cells, flatten, L2-normalise."""

    def __init__(self, grid: tuple[int, int], grey: bool):
        super().__init__()
        self.grid, self.grey = grid, grey

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grey:
            x = x.mean(dim=1, keepdim=True)
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, self.grid).flatten(1)
        return torch.nn.functional.normalize(pooled + 3.0, dim=1)   # shifted: all cosines high, as untrained


def _write_model(folder: Path, task: str, module: torch.nn.Module, **meta) -> None:
    target = folder / task
    target.mkdir(parents=True, exist_ok=True)
    torch.jit.script(module).save(str(target / "model.pt"))
    (target / "meta.json").write_text(json.dumps({"task": task, "name": f"tiny-{task}", "version": "test",
                                                  "metrics": {}, **meta}))


def write_tiny_models(folder: Path) -> Path:
    """Tiny TorchScript models of every released task, built directly (no trainer runs)."""
    write_tiny_salt_model(folder)
    norm = {"scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    labels = ["andesite", "gneiss", "marble", "quartzite", "rhyolite", "schist"]
    colours = (torch.tensor([ROCK_COLOURS[label] for label in labels], dtype=torch.float32) / 255 - 0.5) / 0.25
    _write_model(folder, "rocks", NearestRockColour(colours), labels=labels, input_shape=[3, 28, 28],
                 normalization=norm)
    _write_model(folder, "similarity", PooledPixels((4, 4), grey=False), input_shape=[3, 28, 28],
                 normalization=norm, embedding_dim=48)
    _write_model(folder, "whales", PooledPixels((16, 6), grey=True), input_shape=[3, 256, 96],
                 normalization=norm, embedding_dim=96, new_whale_threshold=0.5)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Tiny salt, rocks, similarity and whales models (see :func:`write_tiny_models`)."""
    return write_tiny_models(tmp_path_factory.mktemp("models"))


def make_app(model_dir: Path, tmp_path: Path, task_handlers=None, **overrides):
    """An app on ``model_dir`` whose database, uploads, galleries and instance folder are under ``tmp_path``,
    on the testing configuration (no job poller threads: a test claims queued jobs itself)."""
    config = {"APP_CONFIG": "testing", "WTF_CSRF_ENABLED": False, "SECRET_KEY": "test", "AUTH_REQUIRED": False,
              "INSTANCE_PATH": str(tmp_path / "instance"),
              "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.db'}",
              "MODEL_DIR": str(model_dir), "UPLOAD_FOLDER": str(tmp_path / "uploads"),
              "GALLERY_FOLDER": str(tmp_path / "gallery"),
              "MAX_BATCH_SIZE": 8, "MAX_BATCH_DELAY_MS": 5, **overrides}
    app = create_app(config, wait_for_models=True, task_handlers=task_handlers)
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
    """uint8 image: left half 230 (salt for the tiny model), right half 20, each +-4 in a
    checkerboard (texture, as a section has: one exact grey over a large area is a fill, no data)."""
    img = np.full(size, 20, np.int16)
    img[:, : size[1] // 2] = 230
    return (img + np.where(np.indices(size).sum(0) % 2 == 0, 4, -4)).astype(np.uint8)


def fail_nth_batch(monkeypatch, n: int, task: str) -> dict:
    """Make the ``n``-th call of any dynamic batcher raise ``QueueFullError`` (a full queue, 503);
    the other calls run the model. Returns the call counter ``{"n": calls so far}``."""
    from app.engine import QueueFullError
    from app.engine.batcher import DynamicBatcher

    real = DynamicBatcher.__call__
    calls = {"n": 0}

    def nth_fails(self, inputs, timeout=None, priority=0):
        calls["n"] += 1
        if calls["n"] == n:
            raise QueueFullError(f"{task}: request queue is full")
        return real(self, inputs, timeout=timeout, priority=priority)

    monkeypatch.setattr(DynamicBatcher, "__call__", nth_fails)
    return calls


def header_bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` pixels."""
    data = bytearray(png_bytes(np.zeros((1, 1), np.uint8)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def rock_png(label: str, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    return png_bytes(np.clip(np.array(ROCK_COLOURS[label]) + rng.normal(0, 25, (28, 28, 3)), 0, 255).astype(np.uint8))


N_IL, N_XL, N_S = 5, 150, 120


def survey(path, n_il: int = N_IL, n_xl: int = N_XL, n_s: int = N_S):
    """Write a small post-stack 3-D SEG-Y (inlines 1..n_il, crosslines 1..n_xl, 4 ms)."""
    rng = np.random.default_rng(0)
    data = rng.uniform(0.2, 1.0, (n_il, n_xl, n_s)).astype(np.float32)
    data[:, :, n_s // 2:] *= -1                      # deeper half negative
    data[:, :, : n_s // 2] *= np.arange(1, n_il + 1)[:, None, None]  # inline-dependent magnitude
    segyio.tools.from_array(str(path), data, dt=4000)
    return data


def unstructured(path, traces: int = 30, n_s: int = 80):
    """Write a SEG-Y with no inline/crossline geometry (a 2-D line)."""
    spec = segyio.spec()
    spec.format, spec.samples, spec.tracecount = 5, list(range(n_s)), traces
    data = np.linspace(-1, 1, traces * n_s, dtype=np.float32).reshape(traces, n_s)
    with segyio.create(str(path), spec) as f:
        for i in range(traces):
            f.header[i] = {segyio.su.cdp: i + 1, segyio.su.offset: 1}
            f.trace[i] = data[i]
    return data


@pytest.fixture(scope="session")
def model_dir(tiny_model_dir):
    """The committed checkpoints when present (the real serving path), else the tiny test models."""
    shipped = all((ROOT / "models" / task / "model.pt").exists() for task in ("salt", "rocks", "similarity"))
    return ROOT / "models" if shipped else tiny_model_dir


def _postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries of Debian's layout (``/usr/lib/postgresql/N/bin``)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on a free loopback port (``initdb`` + ``pg_ctl``, fsync off),
    run as the ``postgres`` system user when the tests run as root; stopped at the end.
    Yields the server URL without a database name. Skips when no server binaries exist."""
    import os
    import shutil
    import socket
    import subprocess
    import tempfile

    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 and shutil.which("runuser") else []
    folder = Path(tempfile.mkdtemp(prefix="geovision-pg-"))   # outside pytest's root-only tmp folders
    if as_user:
        shutil.chown(folder, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A new, empty database on the throwaway server for one test, dropped afterwards."""
    import uuid

    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_server}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_app(request, tiny_model_dir, tmp_path):
    """The app on SQLite and on the throwaway PostgreSQL (the same tests run on both)."""
    overrides = {}
    if request.param == "postgres":
        overrides["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("postgres_url")
    app = make_app(tiny_model_dir, tmp_path, SYNC_MAX_TILES=4, MAX_BATCH_SIZE=4, **overrides)
    yield app
    app.extensions["jobs"].pool.shutdown(wait=True, cancel_futures=True)
    app.extensions["engine"].close()
    with app.app_context():
        from app.extensions import db

        db.session.remove()
        db.engine.dispose()
