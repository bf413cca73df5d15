"""The one serve path (app.serve): every item of a request reaches the batcher in one call, and
each entry point gets typed results (answered, queued, refused) in the items' order."""
import base64
import io

import numpy as np
import pytest

from app.serve import Answered, Queued, Refused, serve
from app.uploads import Upload

from .conftest import half_bright_tile, png_bytes, rock_png

ROCKS = ["andesite", "gneiss", "marble", "quartzite", "rhyolite", "schist", "marble", "gneiss"]


def passes(app, task: str) -> dict[int, int]:
    """Forward passes the task's batcher ran so far, by batch size."""
    return dict(app.extensions["engine"].batchers[task].batch_sizes)


def new_passes(before: dict, after: dict) -> dict[int, int]:
    return {size: after[size] - before.get(size, 0) for size in after if after[size] != before.get(size, 0)}


def test_a_v2_request_of_eight_images_is_one_forward_pass(app, client):
    images = [rock_png(label, seed=i) for i, label in enumerate(ROCKS)]
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [8],
                        "data": [base64.b64encode(b).decode() for b in images]}]}
    before = passes(app, "rocks")
    response = client.post("/v2/models/rocks/infer", json=body)
    assert response.status_code == 200, response.get_json()
    assert new_passes(before, passes(app, "rocks")) == {8: 1}        # MAX_BATCH_SIZE 8: one pass, not eight
    # each element's answer is the one it gets alone (the split by offsets keeps the order)
    labels = {o["name"]: o["data"] for o in response.get_json()["outputs"]}["label"]
    alone = [client.post("/api/v1/rocks/classify", data={"image": [(io.BytesIO(b), "x.png")]}).get_json()
             ["results"][0]["label"] for b in images]
    assert labels == alone


def test_a_bad_file_is_refused_alone_and_the_others_share_one_pass(app, client):
    files = [(io.BytesIO(rock_png("marble", seed=i)), f"{i}.png") for i in range(3)]
    files.insert(1, (io.BytesIO(b"not an image"), "bad.png"))
    before = passes(app, "rocks")
    response = client.post("/api/v1/rocks/classify", data={"image": files})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["filename"] for r in results] == ["0.png", "bad.png", "1.png", "2.png"]
    assert results[1]["error"]["code"] == "invalid_image" and "http_status" not in results[1]
    assert all("label" in r for i, r in enumerate(results) if i != 1)
    assert new_passes(before, passes(app, "rocks")) == {3: 1}


def test_serve_types_each_result(app):
    big = png_bytes(np.tile(half_bright_tile(), (3, 3)))          # 9+ tiles: over SYNC_MAX_TILES=4
    app.config["SYNC_MAX_TILES"] = 4
    items = [Upload("tile.png", png_bytes(half_bright_tile())), Upload("bad.png", b"\x89PNG broken"),
             Upload("big.png", big)]
    handler = app.extensions["tasks"]["salt"]
    with app.test_request_context("/api/v1/salt/segment", method="POST"):
        results = serve(handler, items, {"threshold": 0.5})
        answered, refused, queued = results
        assert isinstance(answered, Answered) and answered.body["prediction_id"] and answered.body["mask_url"]
        assert isinstance(refused, Refused) and refused.code == "invalid_image" and refused.status == 400
        assert isinstance(queued, Queued) and queued.body["job_id"] == queued.job.public_id
        # not recorded: the outcome only (v2, the CLI and jobs record on their own)
        (loose,) = serve(handler, items[:1], {}, queue=False, record=False)
        assert isinstance(loose, Answered) and loose.body is None and loose.outcome.result["rle_mask"] is not None


@pytest.mark.parametrize("batch_size", [1, 3])
def test_flask_predict_sends_each_chunk_of_files_in_one_call(app, runner, tmp_path, batch_size):
    for i in range(3):
        (tmp_path / f"t{i}.png").write_bytes(png_bytes(half_bright_tile()))
    calls = []
    handler = app.extensions["tasks"]["salt"]
    original = handler.infer_many
    handler.infer_many = lambda rows, *a, **k: calls.append(len(rows)) or original(rows, *a, **k)
    try:
        result = runner.invoke(args=["predict", "salt", "--data", str(tmp_path), "--out", str(tmp_path / "s.csv"),
                                     "--batch-size", str(batch_size)])
    finally:
        del handler.infer_many
    assert result.exit_code == 0, result.output
    assert calls == [batch_size] * (3 // batch_size)
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 4


def test_test_apps_run_no_job_poller_threads(app, client):
    assert client.get("/api/v1/health").status_code == 200      # the first request starts the poller, if any
    assert app.config["JOB_POLL_S"] == 0 and app.extensions["jobs"].poller is None
