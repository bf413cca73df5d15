"""Gallery writes under concurrency, rebuild errors, and the history cell of every task."""
import io
import json
import threading

import numpy as np

from app.gallery import append_to_gallery, read_gallery, write_gallery

from .conftest import make_app, rock_png

AUTH = {"Authorization": "Bearer s3cret-token-for-tests"}


def rows(n: int, label: str, seed: int) -> tuple[list[dict], np.ndarray]:
    emb = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
    return [{"label": label, "path": f"{label}-{i}"} for i in range(n)], emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_simultaneous_appends_keep_every_row(tmp_path):
    root = tmp_path / "gallery" / "similarity"
    write_gallery(root, *rows(1, "seed", 0))
    errors: list[Exception] = []
    start = threading.Barrier(8)

    def append(k: int) -> None:
        try:
            start.wait()
            append_to_gallery(root, *rows(1, f"w{k}", k + 1))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    gallery = read_gallery(root)
    assert errors == []
    assert len(gallery) == 9 and gallery.index.ntotal == 9
    assert {it["label"] for it in gallery.items} == {"seed"} | {f"w{k}" for k in range(8)}
    assert [it["id"] for it in gallery.items] == list(range(9))
    versions = [p for p in root.parent.glob("similarity-*") if p.is_dir()]
    assert len(versions) <= 2                     # the current version and the one before it


def test_admin_appends_in_parallel_through_the_api(tiny_model_dir, tmp_path):
    app = make_app(tiny_model_dir, tmp_path, ADMIN_TOKEN="s3cret-token-for-tests")
    try:
        labels = ["andesite", "gneiss", "marble", "quartzite", "rhyolite", "schist", "marble", "gneiss"]
        statuses: list[int] = []

        def add(k: int) -> None:
            data = {"label": labels[k], "image": [(io.BytesIO(rock_png(labels[k], seed=k)), f"{k}.png")]}
            statuses.append(app.test_client().post("/api/v1/admin/gallery/similarity", data=data, headers=AUTH).status_code)

        threads = [threading.Thread(target=add, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses == [200] * 8
        items = json.loads((tmp_path / "gallery" / "similarity" / "items.json").read_text())
        assert sorted(it["path"] for it in items) == sorted(f"upload:{k}.png" for k in range(8))
    finally:
        app.extensions["engine"].close()


def test_rebuild_from_an_empty_folder_is_a_clear_409(tiny_model_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    app = make_app(tiny_model_dir, tmp_path, ADMIN_TOKEN="s3cret-token-for-tests", GALLERY_DATA=str(empty))
    try:
        client = app.test_client()
        response = client.post("/api/v1/admin/gallery/similarity/rebuild", headers=AUTH)
        assert response.status_code == 409
        assert response.get_json()["error"] == {"code": "gallery_empty", "message": f"no images under {empty}"}
        assert client.post("/api/v1/admin/gallery/whales/rebuild", headers=AUTH).status_code == 404
        assert client.post("/api/v1/admin/gallery/salt", headers=AUTH).status_code == 404
        result = app.test_cli_runner().invoke(args=["gallery", "build", "similarity", "--data", str(empty)])
        assert result.exit_code != 0 and "no images under" in result.output
        result = app.test_cli_runner().invoke(args=["gallery", "build", "salt", "--data", str(empty)])
        assert result.exit_code != 0 and "similarity, whales" in result.output
    finally:
        app.extensions["engine"].close()


def test_history_names_the_result_of_every_task(tiny_model_dir, tmp_path, whale_folder):
    app = make_app(tiny_model_dir, tmp_path)
    try:
        built = app.test_cli_runner().invoke(args=["gallery", "build", "whales", "--data", str(whale_folder)])
        assert built.exit_code == 0, built.output
        client = app.test_client()
        photo = (whale_folder / "images" / "w03e0p0.jpg").read_bytes()
        answer = client.post("/api/v1/whales/identify", data={"image": [(io.BytesIO(photo), "mine.jpg")]}).get_json()
        top = answer["results"][0]["predictions"][0]
        client.post("/api/v1/rocks/classify", data={"image": [(io.BytesIO(rock_png("schist")), "rock.png")]})
        html = client.get("/history").get_data(as_text=True)
        assert f"whale03 ({top['score']:.3f}) (duplicate of a gallery photo)" in html
        assert "schist (" in html
    finally:
        app.extensions["engine"].close()


def test_a_retrained_model_is_not_searched_against_the_old_embeddings(tiny_model_dir, rock_folder, tmp_path):
    """The gallery records the model that embedded it: after a retrain (another model.pt, here of
    another embedding size) the embedding search and enrolment answer 409 ``gallery_stale`` with
    the rebuild command, the pixel search still answers, and a rebuild serves again."""
    import shutil

    from app.extensions import engine

    from .conftest import PooledPixels, _write_model

    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models)
    app = make_app(models, tmp_path, ADMIN_TOKEN="s3cret-token-for-tests")
    cli, client = app.test_cli_runner(), app.test_client()

    def search(method: str = "embedding"):
        return client.post("/api/v1/similarity/search", content_type="multipart/form-data",
                           data={"image": [(io.BytesIO(rock_png("gneiss")), "q.png")], "method": method})

    try:
        assert cli.invoke(args=["gallery", "build", "similarity", "--data", str(rock_folder)]).exit_code == 0
        recorded = json.loads((tmp_path / "gallery" / "similarity" / "model.json").read_text())
        assert recorded["name"] == "tiny-similarity" and len(recorded["sha256"]) == 16
        assert search().status_code == 200
        meta = json.loads((models / "similarity" / "meta.json").read_text())
        _write_model(models, "similarity", PooledPixels((2, 2), grey=False), input_shape=meta["input_shape"],
                     normalization=meta["normalization"], embedding_dim=12, version="retrained")
        with app.app_context():
            engine.reload(app)
        stale = search()
        assert stale.status_code == 409 and stale.get_json()["error"]["code"] == "gallery_stale"
        assert "tiny-similarity test" in stale.get_json()["error"]["message"]
        assert "flask gallery build similarity" in stale.get_json()["error"]["message"]
        assert search("pixels").status_code == 200
        added = client.post("/api/v1/admin/gallery/similarity", headers=AUTH,
                            data={"label": "gneiss", "image": [(io.BytesIO(rock_png("gneiss")), "new.png")]})
        assert added.status_code == 409 and added.get_json()["error"]["code"] == "gallery_stale"
        assert cli.invoke(args=["gallery", "build", "similarity", "--data", str(rock_folder)]).exit_code == 0
        fresh = search()
        assert fresh.status_code == 200 and fresh.get_json()["results"][0]["matches"]
    finally:
        app.extensions["engine"].close()
