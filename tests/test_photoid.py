"""Whale photo-ID by local features: verification, viewpoints, the new_whale calibration,
the admin's confirm/new flows, and (with ../shared/data) the served figures equal the offline ones."""
from __future__ import annotations

import csv
import io
import json
import pickle

import cv2
import numpy as np
import pytest
from PIL import Image

from app.records import WhaleDecision
from geovision import photoid
from geovision.metrics import NEW_WHALE
from geovision.photoid_figures import draw_matches
from train.whales.photoid import calibrate

from .conftest import DATA, ROOT, make_app, png_bytes, whale_photo


def textured_whale(seed: int, size=(150, 440)) -> np.ndarray:
    """uint8 (H, W, 3): a white elliptic body on dark water with random dark scars and spots."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[:h, :w]
    body = ((xx - w / 2) / (w * 0.42)) ** 2 + ((yy - h / 2) / (h * 0.47)) ** 2 < 1
    img = np.where(body, 215.0, 40.0)
    for _ in range(40):   # scars: dark strokes of random length, angle and width
        x0, y0 = int(rng.integers(int(w * .25), int(w * .75))), int(rng.integers(int(h * .15), int(h * .85)))
        x1, y1 = x0 + int(rng.integers(-25, 26)), y0 + int(rng.integers(-25, 26))
        cv2.line(img, (x0, y0), (x1, y1), float(rng.uniform(60, 140)), int(rng.integers(1, 4)))
    img = cv2.GaussianBlur(img, (0, 0), 0.8) + rng.normal(0, 3, (h, w))
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def test_a_rotated_relit_copy_verifies_and_another_whale_does_not():
    original = Image.fromarray(textured_whale(1))
    copy = original.rotate(6, resample=Image.Resampling.BILINEAR, fillcolor=(40, 40, 40))
    copy = Image.fromarray(np.clip(np.asarray(copy, float) * 0.8 + 10, 0, 255).astype(np.uint8))   # re-lit
    other = Image.fromarray(textured_whale(2))
    f_orig, f_copy, f_other = (photoid.extract_features(im) for im in (original, copy, other))
    assert len(f_orig) >= 20 and f_orig.descriptors.dtype == np.uint8
    same, different = photoid.verify(f_copy, f_orig), photoid.verify(f_other, f_orig)
    assert same.inliers >= 50 and same.pairs.shape == (same.inliers, 4)
    assert different.inliers < 12 and different.inliers * 5 < same.inliers   # chance matches of similar strokes
    index = photoid.FeatureIndex([0, 1], [f_orig, f_other], ["whale-a", "whale-b"])
    assert index.lnbnn(f_copy).ranked()[0][0] == "whale-a"
    png = draw_matches(copy, original, same)
    assert Image.open(io.BytesIO(png)).size[1] == 320


def test_matches_converging_on_one_point_are_not_a_verification():
    """A RANSAC fit that squeezes spread query points onto one spot of the photo (the degenerate
    transforms seen on the whale page: 7-8 "inliers" whose lines meet at a single point) is refused."""
    rng = np.random.default_rng(3)
    q = rng.uniform(50, 450, (12, 2)).astype(np.float32)
    converging = np.float32(200 + rng.normal(0, 0.3, (12, 2)))
    squeeze = np.float32([[0.01, 0, 200], [0, 0.01, 200]])
    assert not photoid.plausible(squeeze, q, converging)
    shifted = q + np.float32([5, -3])
    assert photoid.plausible(np.float32([[1, 0, 5], [0, 1, -3]]), q, shifted)
    two_spots = np.float32([[100, 100], [300, 300]] * 6)   # spread, but only two distinct photo points
    assert not photoid.plausible(np.float32([[1, 0, 0], [0, 1, 0]]), q, two_spots)


def test_matches_whose_lines_cross_are_not_a_verification():
    """A fit that turns the photo (lines of the drawn matches cross) is refused; a slight turn passes."""
    rng = np.random.default_rng(4)
    q = rng.uniform(50, 450, (12, 2)).astype(np.float32)

    def turned(deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = np.radians(deg)
        m = np.float32([[np.cos(a), -np.sin(a), 250], [np.sin(a), np.cos(a), 0]])
        return m, q, (q @ m[:, :2].T + m[:, 2]).astype(np.float32)

    assert not photoid.plausible(*turned(180)) and not photoid.plausible(*turned(-90))
    assert photoid.plausible(*turned(10))


def test_the_mask_keeps_features_off_the_water():
    img = textured_whale(4)
    img[:40, :] = np.random.default_rng(0).integers(0, 90, (40, img.shape[1], 1))   # rough water above the whale
    photo = Image.fromarray(img)
    masked, whole = photoid.extract_features(photo), photoid.extract_features(photo, body_only=False)
    scale = photoid.LONG_SIDE / img.shape[0]
    assert (masked.keypoints[:, 1] < 40 * scale).sum() == 0        # nothing on the water ...
    assert (whole.keypoints[:, 1] < 40 * scale).sum() >= 10        # ... which has many corners of its own


def test_viewpoint_rules():
    portrait, landscape = Image.fromarray(textured_whale(3)), Image.fromarray(textured_whale(3)).rotate(90, expand=True)
    assert photoid.guess_viewpoint(*portrait.size) == "top" and photoid.guess_viewpoint(*landscape.size) == "left"
    group, variants = photoid.query_variants(portrait)
    assert group == "top" and [v.mirrored for v in variants] == [False]
    group, variants = photoid.query_variants(landscape)       # side view, side unknown: both mirrors
    assert group == "side" and [v.mirrored for v in variants] == [False, True]
    group, variants = photoid.query_variants(landscape, "right")   # right views are mirrored to look left
    assert group == "side" and [v.mirrored for v in variants] == [True]
    assert photoid.viewpoint_group("left") == photoid.viewpoint_group("right") == "side"
    mirrored = photoid.extract_features(landscape, mirror=True)
    assert abs(mirrored.keypoints[:, 0].mean() - (landscape.width * photoid.LONG_SIDE / landscape.width
                                                  - photoid.extract_features(landscape).keypoints[:, 0].mean())) < 15
    with pytest.raises(ValueError):
        photoid.query_variants(portrait, "bottom")


def test_new_whale_decision_and_its_calibration():
    assert photoid.decide_new_whale([], 2.0) and photoid.decide_new_whale([("a", 0.0)], 2.0)
    assert not photoid.decide_new_whale([("a", 5.0)], 2.0)
    assert photoid.decide_new_whale([("a", 3.0), ("b", 2.0)], 2.0)
    assert not photoid.decide_new_whale([("a", 4.0), ("b", 2.0)], 2.0)
    assert photoid.five_predictions([("a", 4), ("b", 2), ("c", 1), ("d", 1), ("e", 1)], False) == ["a", NEW_WHALE, "b", "c", "d"]
    assert photoid.five_predictions([("a", 4), ("b", 2)], True) == [NEW_WHALE, "a", "b"]
    # known queries stand out by a ratio of 3 to 4, new ones by 1.1 to 1.5: the cut falls between
    truths, ranked = [], []
    for i in range(20):
        truths.append(f"w{i}")
        ranked.append([(f"w{i}", 3.0 + i / 20), ("x", 1.0), ("y", 0.5)])
        truths.append(NEW_WHALE)
        ranked.append([(f"z{i}", 1.1 + i / 50), ("x", 1.0), ("y", 0.5)])
    threshold, fig = calibrate(truths, ranked)
    assert 1.48 < threshold <= 3.0 and fig["map_at_5"] == 1.0
    assert fig["new_whale_precision"] == fig["new_whale_recall"] == 1.0 and fig["top1_known"] == 1.0


@pytest.fixture(params=["s3cret"])
def admin_whale_app(request, tiny_model_dir, tmp_path, whale_folder):
    app = make_app(tiny_model_dir, tmp_path, ADMIN_TOKEN=request.param)
    result = app.test_cli_runner().invoke(args=["gallery", "build", "whales", "--data", str(whale_folder)])
    assert result.exit_code == 0, result.output
    yield app
    app.extensions["engine"].close()


def _answer(client, data: bytes) -> dict:
    response = client.post("/api/v1/whales/identify", data={"image": [(io.BytesIO(data), "field.jpg")]})
    assert response.status_code == 200
    return response.get_json()["results"][0]


def _gallery_labels(app) -> list[str]:
    items = json.loads((app.extensions["galleries"].folder / "whales" / "items.json").read_text())
    return [it["label"] for it in items]


def test_admin_confirms_an_individual_and_creates_a_new_one(admin_whale_app):
    client = admin_whale_app.test_client()
    before = _gallery_labels(admin_whale_app)
    answer = _answer(client, png_bytes(whale_photo(3, 5, 0), fmt="JPEG", quality=92))
    url = f"/whales/answers/{answer['prediction_id']}/decide"
    form = {"admin_token": "s3cret", "decided_by": "Dr Beluga", "whale_id": "whale03", "confirm": "Confirm"}
    assert client.post(url, data={**form, "admin_token": "wrong"}).status_code == 303
    assert _gallery_labels(admin_whale_app) == before                        # a wrong token changes nothing
    page = client.post(url, data=form, follow_redirects=True)
    assert "confirmed as whale03 by Dr Beluga" in page.data.decode()
    assert _gallery_labels(admin_whale_app) == before + ["whale03"]
    stranger = _answer(client, png_bytes(whale_photo(77, 0, 0), fmt="JPEG", quality=92))
    new = {**form, "whale_id": "", "new": "New individual"}
    new.pop("confirm")
    client.post(f"/whales/answers/{stranger['prediction_id']}/decide", data=new)
    labels = _gallery_labels(admin_whale_app)
    assert len(labels) == len(before) + 2 and labels[-1].startswith("new-")
    with admin_whale_app.app_context():
        from app.extensions import db
        rows = db.session.execute(db.select(WhaleDecision).order_by(WhaleDecision.id)).scalars().all()
        assert [(r.action, r.whale_id, r.decided_by) for r in rows] == [
            ("confirm", "whale03", "Dr Beluga"), ("new", labels[-1], "Dr Beluga")]
        assert rows[0].prediction_id == answer["prediction_id"] and rows[0].created_at is not None
    # the enrolled individual is now found by its own photo
    again = _answer(client, png_bytes(whale_photo(77, 0, 0), fmt="JPEG", quality=92))
    assert labels[-1] in [p["whale_id"] for p in again["predictions"][:2]]
    assert client.post("/whales/answers/0000/decide", data=form).status_code == 404


@pytest.mark.parametrize("admin_whale_app", [None], indirect=True)
def test_decisions_are_off_without_an_admin_token(admin_whale_app, whale_folder):
    client = admin_whale_app.test_client()
    answer = _answer(client, (whale_folder / "images" / "w01e1p0.jpg").read_bytes())
    assert client.post(f"/whales/answers/{answer['prediction_id']}/decide", data={}).status_code == 404
    assert "Admin: confirm" not in client.post("/whales/", data={"image": [(io.BytesIO(
        (whale_folder / "images" / "w01e1p0.jpg").read_bytes()), "a.jpg")]}).data.decode()


WHALES = DATA / "whales"


@pytest.mark.slow
@pytest.mark.skipif(not (WHALES / "train.csv").exists(), reason="../shared/data/whales is absent")
def test_served_figures_equal_the_offline_evaluation(tmp_path):
    """Every 8th validation query through the API, against the offline script on the same queries."""
    from geovision.metrics import map_at_5
    from geovision.whales import partition
    from train.whales import data as wd
    from train.whales.fusion import served_predictions
    from train.whales.photoid import main as offline
    from train.whales.studies.rescoring import main as rescoring

    params = json.loads((ROOT / "models" / "whales" / "meta.json").read_text())["photoid"]
    app = make_app(ROOT / "models", tmp_path)
    result = app.test_cli_runner().invoke(args=["gallery", "build", "whales", "--data", str(WHALES),
                                                "--exclude", str(wd.SPLIT_FILE)])
    assert result.exit_code == 0, result.output
    expected = offline(["--data", str(WHALES), "--step", "8", "--threshold", str(params["ratio_threshold"]),
                        "--rerank-weight", str(params["rerank_weight"]), "--dump", str(tmp_path / "dump.pkl")])
    trials = rescoring(["--data", str(WHALES), "--dump", str(tmp_path / "dump.pkl")])
    served_row = next(fig for name, fig in trials.items() if name.startswith("served:"))
    assert {k: served_row[k] for k in ("top1_known", "top5_known", "top20_known")} == \
        {k: expected["metrics"][k] for k in ("top1_known", "top5_known", "top20_known")}
    with open(tmp_path / "dump.pkl", "rb") as fh:   # the served ranking offline: votes, fused with the embedding
        predictions = served_predictions(pickle.load(fh), ROOT / "models" / "whales", WHALES, params)
    views = {r["Image"]: r["viewpoint"] for r in csv.DictReader(open(WHALES / "metadata.csv"))}
    client, served = app.test_client(), []
    for image in expected["images"]:
        data = (WHALES / "images" / image).read_bytes()
        response = client.post("/api/v1/whales/identify", data={"image": [(io.BytesIO(data), image)],
                                                                 "viewpoint": views[image]})
        served.append([p["whale_id"] for p in response.get_json()["results"][0]["predictions"]])
    same = sum(a == b[:len(a)] for a, b in zip(predictions, served))
    assert same >= len(served) - 1, "served answers differ from the offline pipeline's"
    truths = [q["truth"] for q in partition(wd.read_rows(WHALES), wd.read_split())[1]][::8]
    assert map_at_5(truths, served) == pytest.approx(map_at_5(truths, predictions), abs=0.01)
    app.extensions["engine"].close()
