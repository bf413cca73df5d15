import io
import re

import numpy as np
import pytest

from app.extensions import db
from app.records import Prediction
from geovision import retrieval
from train.rocks.model import LABELS

from .conftest import fail_nth_batch, png_bytes, rock_png


def post(client, url, files, **form):
    data = {"image": [(io.BytesIO(b), name) for name, b in files], **form}
    return client.post(url, data=data, content_type="multipart/form-data")


@pytest.fixture
def gallery(runner, rock_folder):
    result = runner.invoke(args=["gallery", "build", "similarity", "--data", str(rock_folder)])
    assert result.exit_code == 0, result.output
    assert "48 images" in result.output
    return rock_folder


def test_classify_returns_probabilities_and_records(app, client):
    resp = post(client, "/api/v1/rocks/classify", [("a.png", rock_png("marble")), ("big.png", png_bytes(
        np.full((300, 200, 3), 128, np.uint8)))])
    assert resp.status_code == 200
    results = resp.get_json()["results"]
    assert [r["filename"] for r in results] == ["a.png", "big.png"]
    for r in results:
        assert set(r["probabilities"]) == set(LABELS) and r["label"] in LABELS
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Prediction).filter_by(task="rocks")) == 2


def test_search_without_gallery_is_409(client):
    resp = post(client, "/api/v1/similarity/search", [("a.png", rock_png("gneiss"))])
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "gallery_empty"
    page = post(client, "/rocks/", [("a.png", rock_png("gneiss"))])
    assert page.status_code == 200 and "Similarity search unavailable" in page.get_data(as_text=True)


def test_nearest_neighbour_of_a_gallery_image_is_itself(client, gallery):
    path = gallery / "schist" / "schist.003.jpg"
    for method in ("embedding", "pixels"):
        resp = post(client, "/api/v1/similarity/search", [("q.jpg", path.read_bytes())], k="5", method=method)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        matches = resp.get_json()["results"][0]["matches"]
        assert len(matches) == 5
        assert matches[0]["label"] == "schist" and matches[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert [m["score"] for m in matches] == sorted((m["score"] for m in matches), reverse=True)
        image = client.get(matches[0]["image_url"])
        assert image.status_code == 200 and image.mimetype == "image/png"
    resp = post(client, "/api/v1/similarity/search", [("q.jpg", path.read_bytes())], method="kmeans")
    assert len(resp.get_json()["results"][0]["matches"]) >= 1


def test_gallery_add_without_rebuild(runner, client, gallery, tmp_path):
    new = tmp_path / "odd.png"
    new.write_bytes(png_bytes(np.tile(np.arange(28, dtype=np.uint8)[:, None, None] * 9, (1, 28, 3))))
    result = runner.invoke(args=["gallery", "add", "similarity", str(new), "--label", "striped"])
    assert result.exit_code == 0 and "49 images" in result.output
    matches = post(client, "/api/v1/similarity/search", [("q.png", new.read_bytes())], k="1",
                   method="pixels").get_json()["results"][0]["matches"]
    assert matches[0]["label"] == "striped" and matches[0]["id"] == 48


@pytest.mark.parametrize("k", ["0", "101", "abc", "2.5"])
def test_bad_k_is_400(client, gallery, k):
    resp = post(client, "/api/v1/similarity/search", [("a.png", rock_png("gneiss"))], k=k)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_k"


def test_bad_method_and_bad_file(client, gallery):
    assert post(client, "/api/v1/similarity/search", [("a.png", rock_png("gneiss"))],
                method="magic").status_code == 400
    resp = post(client, "/api/v1/similarity/search", [("a.png", b"nope"), ("b.png", rock_png("gneiss"))])
    first, second = resp.get_json()["results"]
    assert first["error"]["code"] == "invalid_image" and len(second["matches"]) == 10


def test_rocks_page_shows_bars_and_grid(client, gallery):
    resp = post(client, "/rocks/", [("q.png", rock_png("quartzite")), ("bad.png", b"text")], k="6")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert page.count('class="bar-row"') == 6
    assert len(re.findall(r'<img src="[^"]+/similarity/gallery/\d+\.png"', page)) == 6
    assert "bad.png" in page and "not a readable image" in page
    assert "rocks" in client.get("/history").get_data(as_text=True)


def test_precision_and_kmeans_helpers():
    assert retrieval.precision_at_k(np.array([0, 1]), np.array([[0, 0, 1], [1, 1, 1]])) == pytest.approx(5 / 6)
    pts = np.array([[0.0, 0], [0.1, 0], [0.2, 0], [10, 10], [10.1, 10], [10.2, 10]], np.float32)
    centroids, assign, dist = retrieval.fit_kmeans(pts, 2)
    _, ids = retrieval.kmeans_search(centroids, assign, dist, np.array([[10.0, 10.0]], np.float32), 3)
    assert set(ids[0]) == {3, 4, 5}


def test_rocks_page_failing_midway_keeps_no_rows(app, client, gallery, monkeypatch):
    """File 1 is classified and searched (one row), file 2's classification meets a full queue:
    the page answers 503 and file 1's row was never written; a good upload writes one row."""
    from app.records import Prediction

    calls = fail_nth_batch(monkeypatch, 3, "rocks")
    resp = post(client, "/rocks/", [("a.png", rock_png("gneiss")), ("b.png", rock_png("marble"))])
    assert resp.status_code == 503 and calls["n"] == 3
    with app.app_context():
        assert Prediction.query.count() == 0
    assert post(client, "/rocks/", [("c.png", rock_png("schist"))]).status_code == 200
    with app.app_context():
        rows = Prediction.query.all()
        assert len(rows) == 1 and rows[0].task == "rocks" and rows[0].result["similar"]["matches"]


def test_rocks_page_answers_with_one_forward_pass(model_dir, tmp_path, rock_folder, monkeypatch):
    """With the released checkpoints (the rocks output carries the similarity embedding): one forward
    pass of the rocks model per upload and no similarity pass, one row, and the same matches as
    the similarity API's own pass."""
    from app.engine.batcher import DynamicBatcher

    from .conftest import make_app

    if model_dir.name != "models":
        pytest.skip("the committed checkpoints are absent")
    app = make_app(model_dir, tmp_path)
    try:
        runner, client = app.test_cli_runner(), app.test_client()
        assert runner.invoke(args=["gallery", "build", "similarity", "--data", str(rock_folder)]).exit_code == 0
        rows = {"calls": 0}
        real = DynamicBatcher.__call__

        def counted(self, inputs, timeout=None, priority=0):
            rows["calls"] += 1
            rows["last_width"] = None
            out = real(self, inputs, timeout=timeout, priority=priority)
            rows["last_width"] = out.shape[1]
            return out

        monkeypatch.setattr(DynamicBatcher, "__call__", counted)
        page = post(client, "/rocks/", [("m.png", rock_png("marble", 3))], k="5", method="embedding")
        assert page.status_code == 200 and rows == {"calls": 1, "last_width": 6 + 128}
        with app.app_context():
            (row,) = db.session.scalars(db.select(Prediction)).all()
            assert row.task == "rocks" and len(row.result["similar"]["matches"]) == 5
            page_matches = [(m["id"], m["score"]) for m in row.result["similar"]["matches"]]
        api = post(client, "/api/v1/similarity/search", [("m.png", rock_png("marble", 3))], k="5").get_json()
        api_matches = [(m["id"], m["score"]) for m in api["results"][0]["matches"]]
        assert [i for i, _ in page_matches] == [i for i, _ in api_matches]
        assert np.allclose([s for _, s in page_matches], [s for _, s in api_matches], atol=1e-4)
        assert 'class="same"' in page.get_data(as_text=True) or 'class="other"' in page.get_data(as_text=True)
    finally:
        app.extensions["engine"].close()


def test_calibrated_scores_spread_where_cosines_crowd():
    """Embeddings in tight clusters (cosines 0.999-1.000, as the rock gallery's) get percentiles that
    spread over 0-100 among the gallery's own neighbour scores, and angles in degrees."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    vectors = np.concatenate([c + rng.normal(scale=0.02, size=(50, 16)) for c in centres]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = retrieval.flat_index(vectors, "ip")
    reference = retrieval.neighbour_scores(index, k=10, sample=100)
    assert len(reference) == 100 * 10 and np.all(np.diff(reference) >= 0)
    assert reference[0] > 0.99                                    # crowded cosines...
    scores, _ = retrieval.search(index, vectors[:1], 10)
    out = retrieval.calibrated(scores[0], reference)
    percentiles = [o["percentile"] for o in out]
    assert percentiles == sorted(percentiles, reverse=True)       # the ranking is kept
    assert percentiles[0] == 100.0 and percentiles[-1] < 90        # ...spread out (self first)
    assert out[0]["angle_deg"] < 0.5 and out[-1]["angle_deg"] > out[1]["angle_deg"]
    assert retrieval.score_percentile(0.0, reference) == 0.0 and retrieval.score_percentile(0.5, np.zeros(0)) == 100.0
