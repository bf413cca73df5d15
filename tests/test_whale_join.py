"""Joined whale embeddings (``train.whales.join``): one released checkpoint holding several networks."""
from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image

from geovision.checkpoint import MetaError, load_checkpoint, validate_meta
from train.whales.join import join_checkpoints

from .conftest import make_app, whale_photo, write_tiny_models

NORM = {"scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


class TinyEmbedder(torch.nn.Module):
    """A convolution, average pooling to ``grid`` cells, L2-normalised: weights that float16 rounds."""

    def __init__(self, seed: int, grid: tuple[int, int]):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), self.grid).flatten(1)
        return torch.nn.functional.normalize(pooled + 0.1, dim=1)


def write_member(folder, seed: int, grid: tuple[int, int], shape=(3, 256, 96)):
    folder.mkdir(parents=True)
    torch.jit.script(TinyEmbedder(seed, grid)).save(str(folder / "model.pt"))
    dim = 4 * grid[0] * grid[1]
    (folder / "meta.json").write_text(json.dumps({
        "task": "whales", "name": f"whale-arcface-m{seed}", "version": "test", "input_shape": list(shape),
        "normalization": NORM, "metrics": {"val_map_at_5": 0.3}, "embedding_dim": dim, "new_whale_threshold": 0.5,
        "command": f"python -m train whales --seed {seed}"}))
    return folder


@pytest.fixture
def members(tmp_path):
    return [write_member(tmp_path / "a", 1, (8, 3)), write_member(tmp_path / "b", 2, (4, 2))]


def test_the_joined_cosine_is_the_mean_of_the_members_cosines(members, tmp_path):
    meta = join_checkpoints(members, tmp_path / "joined")
    assert meta["embedding_dim"] == 96 + 32 and meta["weights_dtype"] == "float16"
    assert [m["name"] for m in meta["members"]] == ["whale-arcface-m1", "whale-arcface-m2"]
    stored = torch.jit.load(str(tmp_path / "joined" / "model.pt"))
    assert {p.dtype for p in stored.parameters()} == {torch.float16}   # half the bytes on disk
    joined = load_checkpoint(tmp_path / "joined", torch.device("cpu")).module
    assert {p.dtype for p in joined.parameters()} == {torch.float32}   # computed in float32
    x = torch.randn(5, 3, 256, 96)
    with torch.inference_mode():
        a, b = (load_checkpoint(m, torch.device("cpu")).module(x) for m in members)
        e = joined(x)
    assert torch.allclose(e.norm(dim=1), torch.ones(5), atol=1e-3)
    assert torch.allclose(e @ e.T, (a @ a.T + b @ b.T) / 2, atol=5e-3)


def test_members_must_share_the_input(members, tmp_path):
    other = write_member(tmp_path / "c", 3, (4, 2), shape=(3, 128, 48))
    with pytest.raises(ValueError, match="input_shape"):
        join_checkpoints([members[0], other], tmp_path / "joined")


def test_weights_dtype_is_checked():
    meta = {"task": "whales", "name": "x", "version": "1", "input_shape": [3, 8, 8], "normalization": NORM,
            "metrics": {}}
    assert validate_meta({**meta, "weights_dtype": "float16"})
    with pytest.raises(MetaError, match="weights_dtype"):
        validate_meta({**meta, "weights_dtype": "int8"})


def test_a_joined_model_serves_whale_photos(members, tmp_path, whale_folder):
    """The joined checkpoint as ``models/whales``: the gallery is embedded by it and a photo is answered."""
    models = write_tiny_models(tmp_path / "models")
    for name in ("model.pt", "meta.json"):
        (models / "whales" / name).unlink()
    meta = join_checkpoints(members, models / "whales")
    meta["photoid"] = {"ratio_threshold": 2.0, "rerank_weight": 0.3, "embedding_weight": 4.0, "fused_threshold": 0.0}
    (models / "whales" / "meta.json").write_text(json.dumps(meta))   # votes fused with the joined embedding
    app = make_app(models, tmp_path)
    try:
        result = app.test_cli_runner().invoke(args=["gallery", "build", "whales", "--data", str(whale_folder)])
        assert result.exit_code == 0, result.output
        buffer = io.BytesIO()
        Image.fromarray(whale_photo(4, 1, 5)).save(buffer, "JPEG")
        response = app.test_client().post("/api/v1/whales/identify",
                                          data={"image": [(io.BytesIO(buffer.getvalue()), "w.jpg")]})
        assert response.status_code == 200, response.get_json()
        predictions = response.get_json()["results"][0]["predictions"]
        assert len(predictions) == 5 and "new_whale" not in [p["whale_id"] for p in predictions]
        assert "whale04" in [p["whale_id"] for p in predictions]
    finally:
        app.extensions["engine"].close()
