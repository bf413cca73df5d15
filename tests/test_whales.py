"""Whale identification: split, pre-processing, threshold calibration, gallery build/add,
identify through the API and the page, duplicates, enrolment."""
from __future__ import annotations

import base64
import io
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from geovision import whales
from geovision.metrics import NEW_WHALE
from geovision.whales import rank_individuals
from train.whales import data as wd
from train.whales.loop import calibrate_threshold

from .conftest import make_app, png_bytes, whale_photo


def jpeg(array: np.ndarray, quality: int = 92) -> bytes:
    return png_bytes(array, fmt="JPEG", quality=quality)


# --- pure functions ---------------------------------------------------------------------

def synthetic_rows(n_whales: int = 60, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for w in range(n_whales):
        for e in range(int(rng.integers(1, 4))):
            for p in range(int(rng.integers(1, 4))):
                rows.append({"Image": f"{w}-{e}-{p}.jpg", "Id": f"w{w}", "encounter_id": f"w{w}-{e}"})
    return rows


def test_split_holds_out_encounters_and_whole_individuals():
    rows = synthetic_rows()
    split = wd.make_split(rows)
    train, queries, held_out = whales.partition(rows, split)
    roles = Counter(r["role"] for r in split)
    assert roles["query_known"] and roles["query_new"]
    assert abs(roles["query_new"] / len(split) - 1 / 3) < 0.1
    train_encounters = {r["encounter_id"] for r in train}
    train_ids = {r["Id"] for r in train}
    for q in queries:
        assert q["encounter_id"] not in train_encounters          # split by encounter
        if q["truth"] == NEW_WHALE:
            assert q["Id"] not in train_ids                       # whole individual held out
        else:
            assert q["Id"] in train_ids                           # known: seen in another encounter
    assert {r["Id"] for r in held_out} == {q["Id"] for q in queries if q["truth"] == NEW_WHALE}
    assert wd.make_split(rows) == split                           # seeded


def test_committed_split_file_matches_metadata():
    split = wd.read_split()
    assert len(split) > 300 and set(r["role"] for r in split) == set(whales.ROLES)
    share = sum(r["role"] == "query_new" for r in split) / len(split)
    assert 0.3 < share < 0.37


def test_prepare_image_letterboxes_and_turns_landscape_photos():
    tall = Image.fromarray(np.full((200, 50, 3), 200, np.uint8))
    out = whales.prepare_image(tall, 256, 96)
    assert out.shape == (256, 96, 3) and out.dtype == np.uint8
    # 200x50 scales to 256x64: centred, black bands of 16 columns on each side
    assert out[:, :15].max() == 0 and out[:, -15:].max() == 0 and out[:, 20:76].min() == 200
    wide = np.zeros((40, 160, 3), np.uint8)
    wide[:, :80] = 255  # left half white -> after a quarter turn (counter-clockwise) the bottom half
    turned = whales.prepare_image(Image.fromarray(wide), 256, 96)
    body = turned[:, 32:64, 0]
    assert body[:128].mean() < 50 and body[128:].mean() > 200


def test_rank_individuals_scores_each_whale_by_its_best_photo():
    scores = np.array([0.2, 0.9, 0.5, 0.8, 0.1])
    ids = np.array(["a", "b", "a", "c", "b"])
    assert rank_individuals(scores, ids) == [("b", 0.9), ("c", 0.8), ("a", 0.5)]
    assert rank_individuals(scores, ids, limit=2) == [("b", 0.9), ("c", 0.8)]


def test_calibrate_threshold_picks_the_best_new_whale_cut():
    ranked = [[("a", 0.9), ("b", 0.3)], [("c", 0.3), ("a", 0.2)], [("b", 0.35), ("a", 0.3)]]
    truths = ["a", NEW_WHALE, "b"]
    best = calibrate_threshold(ranked, truths)
    # a threshold in (0.30, 0.35] puts new_whale first only for the second query: MAP@5 1.0;
    # ties keep the lowest threshold of the 0.01 grid
    assert best["map_at_5"] == 1.0 and best["threshold"] == 0.31
    assert best["map_at_5_new"] == 1.0 and best["top1_known"] == 1.0


# --- the app ------------------------------------------------------------------------------

@pytest.fixture
def whale_app(tiny_model_dir, tmp_path, whale_folder):
    app = make_app(tiny_model_dir, tmp_path, ADMIN_TOKEN="s3cret-admin-token-value")
    result = app.test_cli_runner().invoke(args=["gallery", "build", "whales", "--data", str(whale_folder)])
    assert result.exit_code == 0, result.output
    # the dry-run model's calibrated threshold is arbitrary; 0.5 keeps the untrained model's
    # (all high) similarities above it, so the ranks below are the embedding's
    app.extensions["engine"].checkpoints["whales"].meta["new_whale_threshold"] = 0.5
    yield app
    app.extensions["engine"].close()


def identify(client, *files: tuple[bytes, str]):
    return client.post("/api/v1/whales/identify",
                       data={"image": [(io.BytesIO(b), name) for b, name in files]})


def test_gallery_build_skips_new_whale_rows(tiny_model_dir, tmp_path, whale_folder):
    data = tmp_path / "with-new"
    (data / "images").mkdir(parents=True)
    lines = (whale_folder / "train.csv").read_text().splitlines()
    for line in lines[1:]:
        name = line.split(",")[0]
        (data / "images" / name).write_bytes((whale_folder / "images" / name).read_bytes())
    (data / "train.csv").write_text("\n".join(lines + [lines[1].split(",")[0] + ",new_whale"]) + "\n")
    app = make_app(tiny_model_dir, tmp_path)
    result = app.test_cli_runner().invoke(args=["gallery", "build", "whales", "--data", str(data)])
    assert result.exit_code == 0, result.output
    items = json.loads((tmp_path / "gallery" / "whales" / "items.json").read_text())
    assert len(items) == len(lines) - 1 and NEW_WHALE not in {it["label"] for it in items}
    assert all(len(it["phash"]) == 64 for it in items)
    app.extensions["engine"].close()


def test_identify_a_gallery_photo(whale_app, whale_folder):
    data = (whale_folder / "images" / "w01e1p0.jpg").read_bytes()
    response = identify(whale_app.test_client(), (data, "query.jpg"))
    assert response.status_code == 200
    (result,) = response.get_json()["results"]
    assert result["filename"] == "query.jpg"
    preds = result["predictions"]
    assert len(preds) == 5 and [set(p) for p in preds] == [{"whale_id", "score", "inliers"}] * 5
    assert preds[0]["whale_id"] == "whale01" and preds[0]["inliers"] >= 10   # its own photo verifies
    assert result["viewpoint"] == "top" and 5 <= len(result["shortlist"]) <= 20
    assert NEW_WHALE not in {s["whale_id"] for s in result["shortlist"]}
    assert result["shortlist"][0]["whale_id"] == "whale01"
    assert sum(p["whale_id"] == NEW_WHALE for p in preds) <= 1
    assert len({p["whale_id"] for p in preds}) == 5
    assert result["duplicate_of"] == {"image": "w01e1p0.jpg", "whale_id": "whale01"}


def test_new_whale_inserted_below_the_threshold(whale_app, whale_folder):
    data = jpeg(whale_photo(42, 0, 0))   # an individual the gallery does not know
    ckpt = whale_app.extensions["engine"].checkpoints["whales"]
    for threshold, rank in ((1e6, 0), (0.0, 1)):
        ckpt.meta["photoid"] = {"ratio_threshold": threshold}
        result = identify(whale_app.test_client(), (data, "q.jpg")).get_json()["results"][0]
        preds, ids = result["predictions"], [p["whale_id"] for p in result["predictions"]]
        assert len(ids) == 5 and len(set(ids)) == 5 and ids[rank] == NEW_WHALE
        assert preds[rank]["score"] == pytest.approx(threshold * result["shortlist"][1]["score"], rel=1e-4)


def test_fusion_adds_the_embedding_cosine_to_the_rescaled_votes():
    votes = [("a", 40.0), ("b", 20.0), ("c", 4.0)]
    cosines = [("c", 0.9), ("b", 0.6), ("d", 0.5), ("a", -0.2)]
    assert whales.fuse_rankings(votes, [], 0.0) == [("a", 1.0), ("b", 0.5), ("c", 0.1)]
    fused = whales.fuse_rankings(votes, cosines, 1.0)
    assert [w for w, _ in fused] == ["b", "a", "c", "d"]          # b: 0.5 + 0.6; a's negative cosine adds 0
    assert dict(fused)["c"] == pytest.approx(1.0) and dict(fused)["d"] == pytest.approx(0.5)
    assert [w for w, _ in whales.fuse_rankings(votes, cosines, 10.0)][0] == "c"


def test_fused_answers_place_new_whale_by_the_fused_score(whale_app, whale_folder):
    """With ``embedding_weight`` the served ranking is the fused one: a gallery photo's individual
    stays first, and new_whale goes where the fused score falls below ``fused_threshold``."""
    ckpt = whale_app.extensions["engine"].checkpoints["whales"]
    own = (whale_folder / "images" / "w01e1p0.jpg").read_bytes()
    try:
        ckpt.meta["photoid"] = {"ratio_threshold": 3.0, "embedding_weight": 1.0, "fused_threshold": 1.5}
        (result,) = identify(whale_app.test_client(), (own, "q.jpg")).get_json()["results"]
        preds = result["predictions"]
        assert preds[0]["whale_id"] == "whale01" and preds[0]["score"] > 1.5   # 1 (votes) + its cosine
        assert preds[1] == {"whale_id": NEW_WHALE, "score": 1.5, "inliers": None}
        ckpt.meta["photoid"]["fused_threshold"] = 10.0   # nothing known is sure enough: new_whale first
        (result,) = identify(whale_app.test_client(), (jpeg(whale_photo(42, 0, 0)), "q.jpg")).get_json()["results"]
        assert result["predictions"][0]["whale_id"] == NEW_WHALE
    finally:
        ckpt.meta.pop("photoid", None)


def test_a_duplicate_puts_its_individual_first(whale_app, whale_folder):
    data = (whale_folder / "images" / "w06e0p1.jpg").read_bytes()
    ckpt = whale_app.extensions["engine"].checkpoints["whales"]
    ckpt.meta["photoid"] = {"ratio_threshold": 1e6}   # the votes alone would answer new_whale first
    result = identify(whale_app.test_client(), (data, "q.jpg")).get_json()["results"][0]
    ids = [p["whale_id"] for p in result["predictions"]]
    assert result["duplicate_of"]["whale_id"] == "whale06"
    assert ids[0] == "whale06" and ids[1] == NEW_WHALE and len(ids) == 5 and len(set(ids)) == 5


def test_duplicates_of_reencoded_copies_but_not_of_other_whales(whale_app, whale_folder):
    with Image.open(whale_folder / "images" / "w04e1p1.jpg") as im:
        reencoded = jpeg(np.asarray(im.convert("RGB").resize((120, 328))), quality=60)
    stranger = jpeg(whale_photo(99, 0, 0))
    response = identify(whale_app.test_client(), (reencoded, "copy.jpg"), (stranger, "other.jpg"))
    copy, other = response.get_json()["results"]
    assert copy["duplicate_of"] == {"image": "w04e1p1.jpg", "whale_id": "whale04"}
    assert other["duplicate_of"] is None


def test_answers_are_recorded(whale_app, whale_folder):
    from app.records import Prediction

    data = (whale_folder / "images" / "w00e0p0.jpg").read_bytes()
    identify(whale_app.test_client(), (data, "a.jpg"), (b"not an image", "b.jpg"))
    with whale_app.app_context():
        rows = Prediction.query.filter_by(task="whales").all()
    assert len(rows) == 1 and rows[0].filename == "a.jpg"
    assert len(rows[0].result["predictions"]) == 5 and rows[0].result["duplicate_of"]["whale_id"] == "whale00"


def test_bad_files_get_their_own_errors(whale_app):
    client = whale_app.test_client()
    response = identify(client, (b"", "empty.jpg"), (jpeg(whale_photo(3, 0, 0)), "ok.jpg"))
    assert response.status_code == 200
    bad, good = response.get_json()["results"]
    assert bad["error"]["code"] == "empty_file" and len(good["predictions"]) == 5
    assert identify(client, (b"%PDF-1.4", "x.pdf")).status_code == 400
    assert client.post("/api/v1/whales/identify", data={}).get_json()["error"]["code"] == "missing_file"


def test_no_gallery_is_a_409(app):
    response = identify(app.test_client(), (jpeg(whale_photo(1, 0, 0)), "q.jpg"))
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "gallery_empty"


def test_cli_add_enrols_a_new_individual(whale_app, tmp_path):
    path = tmp_path / "newcomer.jpg"
    path.write_bytes(jpeg(whale_photo(77, 0, 0)))
    result = whale_app.test_cli_runner().invoke(args=["gallery", "add", "whales", "--id", "whale77", str(path)])
    assert result.exit_code == 0, result.output
    assert "27 photos" in result.output
    preds = identify(whale_app.test_client(), (path.read_bytes(), "again.jpg")).get_json()["results"][0]
    assert preds["predictions"][0]["whale_id"] == "whale77"
    assert preds["duplicate_of"] == {"image": "newcomer.jpg", "whale_id": "whale77"}
    result = whale_app.test_cli_runner().invoke(args=["gallery", "add", "whales", str(path)])
    assert result.exit_code != 0 and "--id" in result.output


def test_admin_api_enrols_photos(whale_app):
    client = whale_app.test_client()
    photo = jpeg(whale_photo(55, 0, 1))
    data = {"whale_id": "whale55", "image": [(io.BytesIO(photo), "w55.jpg")]}
    assert client.post("/api/v1/admin/gallery/whales", data=data).status_code == 401
    response = client.post("/api/v1/admin/gallery/whales", headers={"Authorization": "Bearer s3cret-admin-token-value"},
                           data={"whale_id": "whale55", "image": [(io.BytesIO(photo), "w55.jpg")]})
    assert response.status_code == 200 and response.get_json()["gallery_size"] == 27
    assert identify(client, (photo, "q.jpg")).get_json()["results"][0]["predictions"][0]["whale_id"] == "whale55"


def test_enrol_page_needs_the_admin_token(whale_app, app):
    assert app.test_client().get("/whales/enrol").status_code == 404  # no ADMIN_TOKEN configured
    client = whale_app.test_client()
    assert client.get("/whales/enrol").status_code == 200
    photo = jpeg(whale_photo(66, 0, 0))
    wrong = client.post("/whales/enrol", data={"admin_token": "nope", "whale_id": "whale66",
                                              "image": [(io.BytesIO(photo), "w66.jpg")]})
    assert wrong.status_code == 401 and b"wrong admin token" in wrong.data
    ok = client.post("/whales/enrol", data={"admin_token": "s3cret-admin-token-value", "whale_id": "whale66",
                                           "image": [(io.BytesIO(photo), "w66.jpg")]}, follow_redirects=True)
    assert ok.status_code == 200 and b"enrolled 1 photo(s) of whale66" in ok.data
    bad_id = client.post("/whales/enrol", data={"admin_token": "s3cret-admin-token-value", "whale_id": "../x",
                                               "image": [(io.BytesIO(photo), "w66.jpg")]})
    assert bad_id.status_code == 400 and b"letters, digits" in bad_id.data


def test_page_shows_candidates_with_gallery_photos(whale_app, whale_folder):
    client = whale_app.test_client()
    data = (whale_folder / "images" / "w05e0p0.jpg").read_bytes()
    page = client.post("/whales/", data={"image": [(io.BytesIO(data), "mine.jpg")]})
    html = page.data.decode()
    assert page.status_code == 200 and "mine.jpg" in html
    assert html.count('class="known"') + html.count('class="new-whale"') == 5
    assert "Duplicate of gallery photo" in html and "1. whale05" in html
    matches = [part.split('"')[0] for part in html.split('class="match" src="data:image/png;base64,')[1:]]
    assert matches   # the query beside the candidate's best photo, matched keypoints drawn
    picture = Image.open(io.BytesIO(base64.b64decode(matches[0])))
    assert picture.height == 320 and picture.width > 2 * 100   # two narrow photos side by side
    assert "shortlist" in html and html.count("<tr><td>") >= 5
    thumb = client.get("/whales/gallery/0.jpg")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert client.get("/whales/gallery/9999.jpg").status_code == 404


def test_the_whale_embedding_is_served_frozen_and_the_log_names_it(caplog, monkeypatch):
    """torch's optimize_for_inference fails on the GeM + Linear + BatchNorm1d graph (and leaves its
    copy half converted): a new frozen module is served, said once at INFO level with the model's
    name, no 'please report' warning. The failure is forced here, as torch shows it depending on
    what ran before in the process."""
    import logging

    import torch

    from geovision.inference import optimise_for_cpu
    from train.whales.model import WhaleEmbedder, WhaleNet

    net = WhaleNet(64, width=8).eval()
    example = torch.randn(2, 3, 64, 32)
    traced = torch.jit.trace(WhaleEmbedder(net).eval(), example, check_trace=False)

    def broken(module, *args, **kwargs):
        torch._C._jit_pass_convert_frozen_ops_to_mkldnn(module.graph)   # what the failing pass leaves
        raise RuntimeError("0 INTERNAL ASSERT FAILED at ivalue.h, please report a bug to PyTorch. expected double")

    monkeypatch.setattr(torch.jit, "optimize_for_inference", broken)
    monkeypatch.setattr(logging.getLogger("geovision.inference"), "disabled", False)   # an app's dictConfig
    with caplog.at_level(logging.INFO, logger="geovision.inference"):
        served = optimise_for_cpu(traced, "whales")
    assert served is not traced and isinstance(served, torch.jit.ScriptModule)
    torch.testing.assert_close(served(example), traced(example), atol=1e-5, rtol=1e-4)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("whales: frozen;")]


def test_candidates_show_photos_of_the_query_viewpoint_only():
    """A top-view query's candidate shows its top-view gallery photos, never its side views; a
    candidate with no photo of that viewpoint shows none (the page then says so)."""
    from types import SimpleNamespace

    from app.whales.handler import WhalesHandler

    items = [{"id": 0, "label": "w1", "viewpoint": "left"}, {"id": 1, "label": "w1", "viewpoint": "top"},
             {"id": 2, "label": "w1", "viewpoint": "right"}, {"id": 3, "label": "w2", "viewpoint": "left"}]
    gallery = SimpleNamespace(items=items, cache={})
    result = {"predictions": [{"whale_id": "w1"}, {"whale_id": "w2"}, {"whale_id": "new_whale"}], "duplicate_of": None}
    WhalesHandler()._add_photos(result, gallery, {"w1": [0]}, None, None, None, group="top")
    assert result["predictions"][0]["photo_ids"] == [1] and result["predictions"][1]["photo_ids"] == []
    side = {"predictions": [{"whale_id": "w1"}], "duplicate_of": None}
    WhalesHandler()._add_photos(side, SimpleNamespace(items=items, cache={}), {}, None, None, None, group="side")
    assert side["predictions"][0]["photo_ids"] == [0, 2]


def test_the_page_explains_the_new_whale_cut(whale_app):
    """The page says in words why new_whale stands where it does, with its threshold."""
    ckpt = whale_app.extensions["engine"].checkpoints["whales"]
    ckpt.meta["photoid"] = {"ratio_threshold": 1e6}      # nobody stands out: new_whale first
    page = whale_app.test_client().post("/whales/", data={"image": [(io.BytesIO(jpeg(whale_photo(42, 0, 0))), "q.jpg")]})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "1. new_whale" in html
    assert "new_whale is placed where the" in html and "must score at least that" in html
