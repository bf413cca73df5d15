"""The committed salt checkpoint, measured through the API on the fixed validation split."""
import io
import json

import numpy as np
import pytest
from PIL import Image

from train.metrics import tgs_metric
from train.rle import rle_decode
from train.salt_data import read_split

from .conftest import DATA, ROOT, make_app

MODEL = ROOT / "models" / "salt"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (DATA / "tgs-salt").is_dir(), reason="../shared/data absent"),
              pytest.mark.skipif(not (MODEL / "model.pt").exists(), reason="no committed salt checkpoint")]


def test_committed_checkpoint_scores_at_least_080_through_the_api(tmp_path):
    app = make_app(ROOT / "models", tmp_path, MAX_BATCH_SIZE=32)
    try:
        client = app.test_client()
        ids = read_split()
        assert len(ids) == 360
        folder = DATA / "tgs-salt" / "train"
        truth, pred = [], []
        for start in range(0, len(ids), 40):
            chunk = ids[start:start + 40]
            files = [(io.BytesIO((folder / "images" / f"{i}.png").read_bytes()), f"{i}.png") for i in chunk]
            resp = client.post("/api/v1/salt/segment", data={"image": files}, content_type="multipart/form-data")
            assert resp.status_code == 200
            for i, result in zip(chunk, resp.get_json()["results"]):
                assert result["filename"] == f"{i}.png"
                pred.append(rle_decode(result["rle_mask"], (101, 101)))
                truth.append(np.asarray(Image.open(folder / "masks" / f"{i}.png").convert("L")) > 127)
        score = tgs_metric(np.stack(truth), np.stack(pred))
        meta = json.loads((MODEL / "meta.json").read_text())
        print(f"validation TGS metric through the API: {score:.4f} (meta.json: {meta['metrics']['val_tgs_metric']})")
        assert score >= 0.80
        assert abs(score - meta["metrics"]["val_tgs_metric"]) < 0.01
    finally:
        app.extensions["engine"].close()
