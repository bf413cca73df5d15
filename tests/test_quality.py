"""The committed salt checkpoint, measured through the API on the fixed validation split."""
import io
import json

import numpy as np
import pytest
from PIL import Image

from geovision.metrics import tgs_metric
from geovision.rle import rle_decode
from train.salt.data import read_split

from .conftest import DATA, ROOT, make_app

MODEL = ROOT / "models" / "salt"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (DATA / "tgs-salt").is_dir(), reason="../shared/data absent"),
              pytest.mark.skipif(not (MODEL / "model.pt").exists(), reason="no committed salt checkpoint")]


#: The target of the salt issue; the released checkpoint scores 0.8019 on the split.
SALT_FLOOR = 0.80


def test_committed_checkpoint_quality_through_the_api(tmp_path):
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
        assert score >= SALT_FLOOR
        assert abs(score - meta["metrics"]["val_tgs_metric"]) < 0.01
    finally:
        app.extensions["engine"].close()


ROCKS_DATA = DATA / "geological-similarity"


@pytest.mark.skipif(not ROCKS_DATA.is_dir(), reason="../shared/data absent")
@pytest.mark.skipif(not (ROOT / "models" / "rocks" / "model.pt").exists(), reason="no committed rocks checkpoint")
def test_committed_rock_models_through_the_api(tmp_path):
    """Accuracy >= 0.98 and precision@10 >= 0.95 on the validation split, gallery = the rest."""
    from train.rocks.data import SPLIT_FILE

    app = make_app(ROOT / "models", tmp_path, MAX_BATCH_SIZE=64)
    try:
        runner = app.test_cli_runner()
        built = runner.invoke(args=["gallery", "build", "similarity", "--data", str(ROCKS_DATA), "--exclude", str(SPLIT_FILE)])
        assert built.exit_code == 0, built.output
        client = app.test_client()
        val = SPLIT_FILE.read_text().split()
        correct, precisions = 0, []
        for start in range(0, len(val), 100):
            chunk = val[start:start + 100]
            files = lambda chunk=chunk: [(io.BytesIO((ROCKS_DATA / p).read_bytes()), p.split("/")[1]) for p in chunk]
            classified = client.post("/api/v1/rocks/classify", data={"image": files()},
                                     content_type="multipart/form-data").get_json()["results"]
            searched = client.post("/api/v1/similarity/search", data={"image": files(), "k": "10"},
                                   content_type="multipart/form-data").get_json()["results"]
            for path, c, s in zip(chunk, classified, searched):
                label = path.split("/")[0]
                correct += c["label"] == label
                assert len(s["matches"]) == 10
                precisions.append(np.mean([m["label"] == label for m in s["matches"]]))
        accuracy, p_at_10 = correct / len(val), float(np.mean(precisions))
        print(f"rocks through the API: accuracy {accuracy:.4f}, precision@10 {p_at_10:.4f} ({len(val)} queries)")
        assert accuracy >= 0.98
        assert p_at_10 >= 0.95
    finally:
        app.extensions["engine"].close()


# The whales' quality through the API: tests/test_photoid.py::test_served_figures_equal_the_offline_evaluation
