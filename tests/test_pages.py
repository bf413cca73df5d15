import io
import re

import numpy as np
import pytest

from .conftest import half_bright_tile, make_app, png_bytes


def upload(client, files, **form):
    data = {"image": [(io.BytesIO(b), name) for name, b in files], **form}
    return client.post("/salt/", data=data, content_type="multipart/form-data")


def test_upload_page_renders_form(client):
    page = client.get("/salt/").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page and "multiple" in page


def test_upload_shows_overlay_coverage_and_downloads(client):
    resp = upload(client, [("one.png", png_bytes(half_bright_tile())), ("two.png", png_bytes(half_bright_tile()))])
    assert resp.status_code == 302
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert page.count('class="result"') == 2
    assert "49.50 %" in page
    overlay = re.search(r'src="([^"]+overlay.png)"', page).group(1)
    assert client.get(overlay).status_code == 200
    mask_link = re.search(r'href="([^"]+mask.png\?download=1)"', page).group(1)
    download = client.get(mask_link)
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    history = client.get("/history").get_data(as_text=True)
    assert "one.png" in history and "two.png" in history


def test_bad_file_shows_form_error(client):
    resp = upload(client, [("bad.png", b"not an image")])
    assert resp.status_code == 400
    assert "not a readable image" in resp.get_data(as_text=True)
    mixed = upload(client, [("bad.png", b"not an image"), ("good.png", png_bytes(half_bright_tile()))])
    text = mixed.get_data(as_text=True)
    assert mixed.status_code == 200 and "bad.png" in text and "good.png" in text and "overlay.png" in text


def test_wrong_extension_and_empty_submit_are_form_errors(client):
    assert "PNG, JPEG, TIFF images or SEG-Y files only" in upload(client, [("x.exe", b"MZ")]).get_data(as_text=True)
    assert upload(client, []).status_code == 400


def test_too_large_upload_gives_html_error(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    resp = upload(client, [("big.png", b"\0" * 5000)])
    assert resp.status_code == 413 and "larger than the limit" in resp.get_data(as_text=True)


def test_csrf_is_enforced_on_the_form(tiny_model_dir, tmp_path):
    app = make_app(tiny_model_dir, tmp_path, WTF_CSRF_ENABLED=True)
    try:
        client = app.test_client()
        resp = upload(client, [("one.png", png_bytes(half_bright_tile()))])
        assert resp.status_code == 400 and "CSRF" in resp.get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                          client.get("/salt/").get_data(as_text=True)).group(1)
        assert upload(client, [("one.png", png_bytes(half_bright_tile()))], csrf_token=token).status_code == 302
    finally:
        app.extensions["engine"].close()


@pytest.mark.parametrize("path", ["/", "/history", "/salt/result/doesnotexist"])
def test_pages_answer(client, path):
    assert client.get(path).status_code == (404 if "doesnotexist" in path else 200)


def test_results_download_as_kaggle_submission(client):
    resp = upload(client, [("a1.png", png_bytes(half_bright_tile())), ("b2.png", png_bytes(half_bright_tile()))])
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    link = re.search(r'href="([^"]+submission.csv[^"]*)"', page).group(1).replace("&amp;", "&")
    csv_text = client.get(link).get_data(as_text=True).splitlines()
    assert csv_text[0] == "id,rle_mask"
    assert [line.split(",")[0] for line in csv_text[1:]] == ["a1", "b2"]
    assert csv_text[1].split(",")[1] == "1 5050"       # column-major: the first 50 columns are salt


def test_a_formula_in_a_file_name_is_not_run_by_a_spreadsheet(client):
    """OWASP CSV injection: ``=1+2*cmd.png`` must not become a formula cell in submission.csv."""
    names = ["=1+2*cmd.png", "+SUM(A1).png", "-2+3.png", "@cmd.png", "plain.png"]
    resp = upload(client, [(n, png_bytes(half_bright_tile())) for n in names])
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    link = re.search(r'href="([^"]+submission.csv[^"]*)"', page).group(1).replace("&amp;", "&")
    ids = [line.split(",")[0] for line in client.get(link).get_data(as_text=True).splitlines()[1:]]
    assert ids == ["'=1+2*cmd", "'+SUM(A1)", "'-2+3", "'@cmd", "plain"]


def test_every_history_row_reopens_its_answer(client):
    """Salt rows open the salt result page, rocks rows the recorded answer (label and probabilities);
    every link of the history page answers 200, an unknown answer 404."""
    from .conftest import rock_png

    upload(client, [("tile.png", png_bytes(half_bright_tile()))])
    client.post("/rocks/", data={"image": [(io.BytesIO(rock_png("marble")), "stone.png")]},
                content_type="multipart/form-data")
    history = client.get("/history").get_data(as_text=True)
    links = dict(re.findall(r'<a href="([^"]+)">([^<]+)</a>', history))
    opened = {name: url for url, name in links.items() if name in ("tile.png", "stone.png")}
    assert set(opened) == {"tile.png", "stone.png"}, history
    assert "/salt/result/" in opened["tile.png"] and "/answers/" in opened["stone.png"]
    page = client.get(opened["stone.png"])
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "marble" in text and "probabilities" in text
    assert client.get("/answers/" + "0" * 32).status_code == 404


def test_the_rocks_page_counts_its_similarity_search_on_the_models_page(model_dir, rock_folder, tmp_path):
    """With the released checkpoints the rocks page answers the similarity search from the rocks pass
    (the similarity batcher never sees it): the similarity model's "Requests served" counts it."""
    from .conftest import rock_png

    if not (model_dir / "rocks" / "meta.json").exists() or '"embedding_of"' not in (model_dir / "rocks" / "meta.json").read_text():
        pytest.skip("the rocks checkpoint carries no similarity embedding")
    app = make_app(model_dir, tmp_path)
    try:
        assert app.test_cli_runner().invoke(args=["gallery", "build", "similarity", "--data", str(rock_folder)]).exit_code == 0
        client = app.test_client()

        def served() -> dict:
            return {m["task"]: m["requests_served"] for m in client.get("/api/v1/models").get_json()["models"]}
        before = served()
        for k in range(3):
            page = client.post("/rocks/", data={"image": [(io.BytesIO(rock_png("marble", seed=k)), f"r{k}.png")], "k": "5"},
                               content_type="multipart/form-data")
            assert page.status_code == 200 and "most similar gallery images" in page.get_data(as_text=True)
        after = served()
        assert after["similarity"] - before["similarity"] == 3 and after["rocks"] - before["rocks"] == 3
    finally:
        app.extensions["engine"].close()


def test_the_domain_check_flags_a_picture_unlike_the_training_tiles(model_dir, tmp_path):
    """A TGS-like tile is in the domain; a photo of something else (a colour checkerboard) is flagged
    and its confidence is low, with the warning on the page."""
    if not (model_dir / "salt" / "domain.npz").exists():
        pytest.skip("the salt checkpoint has no domain statistics")
    app = make_app(model_dir, tmp_path)
    try:
        client = app.test_client()
        rng = np.random.default_rng(0)
        seismic = np.clip(128 + 40 * np.sin(np.arange(101)[:, None] / 3.0 + rng.normal(0, 0.2, (1, 101)))
                          + rng.normal(0, 8, (101, 101)), 0, 255).astype(np.uint8)
        board = (np.indices((303, 303)).sum(axis=0) // 16 % 2 * 255).astype(np.uint8)
        results = {}
        for name, picture in (("layers.png", seismic), ("board.png", board)):
            body = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(png_bytes(picture)), name)]}).get_json()
            results[name] = body["results"][0]["confidence"]
        assert results["board.png"]["domain"]["unlike"] and results["board.png"]["level"] == "low"
        assert results["layers.png"]["domain"]["score"] < results["board.png"]["domain"]["score"]
        page = client.post("/salt/", data={"image": [(io.BytesIO(png_bytes(board)), "board.png")]},
                           content_type="multipart/form-data", follow_redirects=True).get_data(as_text=True)
        assert "looks unlike the data the model was trained on" in page
    finally:
        app.extensions["engine"].close()
