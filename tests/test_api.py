import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.extensions import db
from app.records import Prediction
from geovision.rle import rle_decode

from .conftest import half_bright_tile, header_bomb_png, png_bytes


def post(client, files, **form):
    data = {"image": [(io.BytesIO(b), name) for name, b in files], **form}
    return client.post("/api/v1/salt/segment", data=data, content_type="multipart/form-data")


def test_health_ready_models(client):
    assert client.get("/api/v1/health").get_json() == {"status": "ok"}
    ready = client.get("/api/v1/ready")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
    models = client.get("/api/v1/models").get_json()["models"]
    assert sorted(m["task"] for m in models) == ["rocks", "salt", "similarity", "whales"]
    salt = next(m for m in models if m["task"] == "salt")
    assert salt["name"] == "tiny-bright-is-salt" and salt["device"] == "cpu"
    assert salt["max_batch_size"] == 8 and "metrics" in salt


def test_segment_tile_gives_mask_rle_and_record(app, client):
    resp = post(client, [("tile.png", png_bytes(half_bright_tile()))])
    assert resp.status_code == 200, resp.get_data(as_text=True)
    (result,) = resp.get_json()["results"]
    assert result["filename"] == "tile.png"
    assert (result["width"], result["height"]) == (101, 101)
    mask = rle_decode(result["rle_mask"], (101, 101))
    assert mask[:, :50].all() and not mask[:, 51:].any()
    assert abs(result["coverage"] - 50 / 101) < 1e-6
    served = client.get(result["mask_url"])
    assert served.status_code == 200 and served.mimetype == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(served.data))) > 0, mask.astype(bool))
    overlay = client.get(result["overlay_url"])
    assert Image.open(io.BytesIO(overlay.data)).mode == "RGB"
    with app.app_context():
        row = db.session.scalar(db.select(Prediction).filter_by(public_id=result["prediction_id"]))
        assert row.task == "salt" and row.model_name == "tiny-bright-is-salt"
        assert row.result["rle_mask"] == result["rle_mask"] and row.total_ms > 0
        assert len(row.input_sha256) == 64


def test_large_section_and_results_in_file_order(client):
    section = half_bright_tile((230, 410))
    resp = post(client, [("b.png", png_bytes(section)), ("a.png", png_bytes(half_bright_tile()))])
    names = [r["filename"] for r in resp.get_json()["results"]]
    assert names == ["b.png", "a.png"]
    big = resp.get_json()["results"][0]
    mask = rle_decode(big["rle_mask"], (230, 410))
    assert mask.shape == (230, 410)
    assert mask[:, :205].all() and not mask[:, 206:].any()     # no seams between tiles


def test_threshold_changes_the_answer_and_is_validated(client):
    # greys 128/129 in a checkerboard: probabilities 0.54 and 0.61 (a one-valued picture is all no data)
    tile = np.where(np.indices((101, 101)).sum(0) % 2 == 0, 128, 129).astype(np.uint8)
    assert post(client, [("t.png", png_bytes(tile))], threshold="0.4").get_json()["results"][0]["coverage"] == 1.0
    assert post(client, [("t.png", png_bytes(tile))], threshold="0.7").get_json()["results"][0]["coverage"] == 0.0
    for bad in ["2", "-0.1", "abc", "nan"]:
        resp = post(client, [("t.png", png_bytes(tile))], threshold=bad)
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_threshold"


def test_bad_files_get_their_own_errors(app, client):
    good = png_bytes(half_bright_tile())
    resp = post(client, [("../../etc/passwd.png", good), ("notes.png", b"just text"), ("empty.png", b"")])
    assert resp.status_code == 200
    first, second, third = resp.get_json()["results"]
    assert first["filename"] == "passwd.png" and "rle_mask" in first
    assert second["error"]["code"] == "invalid_image"
    assert third["error"]["code"] == "empty_file"
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Prediction.id))) == 1


def test_requests_without_usable_files(client):
    resp = client.post("/api/v1/salt/segment", data={}, content_type="multipart/form-data")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "missing_file"
    resp = client.post("/api/v1/salt/segment", data={"file": (io.BytesIO(b"x"), "a.png")},
                       content_type="multipart/form-data")
    assert resp.status_code == 400
    resp = post(client, [("a.pdf", b"%PDF-1.4 ...")])
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_image"
    resp = post(client, [("bomb.png", header_bomb_png())])
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "image_too_large"
    assert client.get("/api/v1/ready").status_code == 200


def test_upload_over_max_content_length_is_413(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    resp = post(client, [("big.png", b"\0" * 5000)])
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "payload_too_large"


def test_unknown_api_path_is_json_404(client):
    resp = client.get("/api/v1/nope")
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"


def test_min_salt_pixels_empties_specks_on_a_tile(app, client):
    speck = np.full((101, 101), 20, np.uint8)
    speck[50:54, 50:54] = 230                       # 16 salt pixels for the tiny model
    app.extensions["engine"].checkpoints["salt"].meta["min_salt_pixels"] = 25
    assert post(client, [("s.png", png_bytes(speck))]).get_json()["results"][0]["rle_mask"] == ""
    app.extensions["engine"].checkpoints["salt"].meta["min_salt_pixels"] = 10
    assert post(client, [("s.png", png_bytes(speck))]).get_json()["results"][0]["coverage"] > 0


def test_flask_predict_writes_the_same_rle_as_the_api(client, runner, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    tiles = {"t1": half_bright_tile(), "t2": half_bright_tile((230, 410)), "t3": np.full((101, 101), 20, np.uint8)}
    for name, img in tiles.items():
        (folder / f"{name}.png").write_bytes(png_bytes(img))
    out = tmp_path / "submission.csv"
    result = runner.invoke(args=["predict", "salt", "--data", str(tmp_path), "--out", str(out), "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows[0] == "id,rle_mask" and [r.split(",")[0] for r in rows[1:]] == ["t1", "t2", "t3"]
    for row in rows[1:]:
        name, rle = row.split(",")
        api = post(client, [(f"{name}.png", (folder / f"{name}.png").read_bytes())]).get_json()["results"][0]
        assert rle == api["rle_mask"]
    assert rows[3] == "t3,"


def test_flask_predict_gives_the_api_answer_on_real_sections(model_dir, tmp_path):
    """A real SEG-Y line (water column, dead bottom) and a figure of it: ``flask predict`` goes through
    the handler's steps (data area, no data, fill, edge rule), so its RLE is the API's."""
    from .conftest import DATA, make_app
    from .section_figures import read_section, render

    real = DATA / "seismic-real" / "volve10r12-full-z-il10117sub.sgy"
    if not real.exists():
        pytest.skip("../shared/data/seismic-real is absent")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "line.sgy").write_bytes(real.read_bytes())
    (folder / "figure.png").write_bytes(render(read_section(real), "figure-grey").data)
    app = make_app(model_dir, tmp_path, SYNC_MAX_TILES=10_000)
    try:
        out = tmp_path / "submission.csv"
        result = app.test_cli_runner().invoke(args=["predict", "salt", "--data", str(folder), "--out", str(out)])
        assert result.exit_code == 0, result.output
        rows = dict(line.split(",") for line in out.read_text().splitlines()[1:])
        client = app.test_client()
        for name in ("line.sgy", "figure.png"):
            api = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO((folder / name).read_bytes()), name)],
                                                              "domain": "depth"}).get_json()["results"][0]
            assert rows[Path(name).stem] == api["rle_mask"], name
        assert rows["line"]                                  # the model draws salt here (7.5 %): a real comparison
    finally:
        app.extensions["engine"].close()
