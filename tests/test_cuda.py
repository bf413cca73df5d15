"""The CUDA path (pinned copies, autocast, OOM splitting on a real GPU); skipped without CUDA."""
import io

import pytest
import torch

from app.engine.batcher import DynamicBatcher

from .conftest import half_bright_tile, make_app, png_bytes

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


@pytest.mark.parametrize("precision", ["off", "fp16", "bf16"])
def test_salt_on_cuda_matches_cpu(tiny_model_dir, tmp_path, precision):
    answers = {}
    for device in ("cpu", "cuda"):
        (tmp_path / device).mkdir()
        app = make_app(tiny_model_dir, tmp_path / device, DEVICE=device, MIXED_PRECISION=precision)
        try:
            resp = app.test_client().post("/api/v1/salt/segment", content_type="multipart/form-data",
                                          data={"image": [(io.BytesIO(png_bytes(half_bright_tile((300, 300)))), "t.png")]})
            answers[device] = resp.get_json()["results"][0]
            assert app.extensions["engine"].device.type == device
        finally:
            app.extensions["engine"].close()
    assert answers["cuda"]["rle_mask"] == answers["cpu"]["rle_mask"]


def test_batcher_moves_batches_to_the_gpu():
    seen = []

    def model(x):
        seen.append(x.device.type)
        return x * 2

    batcher = DynamicBatcher(model, max_batch_size=4, device="cuda")
    try:
        out = batcher(torch.ones(3, 2), timeout=30)
        assert out.device.type == "cpu" and torch.equal(out, torch.full((3, 2), 2.0))
        assert seen == ["cuda"]
    finally:
        batcher.close()
