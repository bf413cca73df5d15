"""The task-handler recipe: a fifth task is one handler, one template, one models/<task>/ folder
and one line of registration, and then it has an API route, a page, a menu entry, a home card and
a history cell without any other edit."""
import io

import numpy as np
import pytest
import torch
from flask import current_app
from PIL import Image

from app import default_tasks
from app.tasks import Outcome, Prepared, TaskApi, TaskHandler, TaskPage
from geovision.imaging import decode_image, to_gray

from .conftest import make_app, png_bytes


class MeanBrightness(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).unsqueeze(1)


class BrightnessApi(TaskApi):
    action = "measure"


class BrightnessPage(TaskPage):
    title = "Brightness meter"
    blurb = "Mean grey level of a photo"
    result_template = "brightness/_result.html"

    def history_text(self, summary: dict) -> str:
        return f"brightness {summary['brightness']:.2f}"


class BrightnessHandler(TaskHandler):
    """The toy fifth task: mean grey level of a photo (0 black .. 1 white)."""

    name = "brightness"
    api = BrightnessApi()
    page = BrightnessPage()

    def preprocess(self, item, ckpt) -> Prepared:
        image = decode_image(item.data, current_app.config["MAX_IMAGE_PIXELS"])
        grey = np.asarray(Image.fromarray((to_gray(image) * 255).astype(np.uint8)).resize((32, 32)), np.float32) / 255
        return Prepared(torch.from_numpy(grey)[None, None], image.size)

    def postprocess(self, prepared, outputs, ckpt) -> Outcome:
        result = {"brightness": round(float(outputs[0, 0]), 4)}
        return Outcome(result, result)


def toy_app(tiny_model_dir, tmp_path):
    models = tmp_path / "models"                                  # 1. a models/<task>/ folder
    models.mkdir()
    for task in ("salt", "rocks", "similarity", "whales"):
        (models / task).symlink_to(tiny_model_dir / task)
    (models / "brightness").mkdir()
    torch.jit.script(MeanBrightness()).save(str(models / "brightness" / "model.pt"))
    (models / "brightness" / "meta.json").write_text(
        '{"task": "brightness", "name": "mean-grey", "version": "1", "input_shape": [1, 32, 32],'
        ' "normalization": {"mean": [0.0], "std": [1.0]}, "metrics": {}}')
    templates = tmp_path / "templates" / "brightness"            # 2. one template
    templates.mkdir(parents=True)
    (templates / "_result.html").write_text('<p class="brightness">{{ r.filename }}: {{ r.brightness }}</p>')
    BrightnessHandler.page.template_folder = tmp_path / "templates"
    # 3. the handler module above; 4. one line of registration:
    return make_app(models, tmp_path, task_handlers=[*default_tasks(), BrightnessHandler()])


def test_a_toy_task_is_served_through_the_api_page_menu_and_history(tiny_model_dir, tmp_path):
    app = toy_app(tiny_model_dir, tmp_path)
    try:
        client = app.test_client()
        white, grey = png_bytes(np.full((40, 60), 255, np.uint8)), png_bytes(np.full((40, 60), 64, np.uint8))
        response = client.post("/api/v1/brightness/measure",
                               data={"image": [(io.BytesIO(white), "white.png"), (io.BytesIO(grey), "grey.png"),
                                               (io.BytesIO(b"junk"), "junk.png")]})
        assert response.status_code == 200
        first, second, bad = response.get_json()["results"]
        assert first["filename"] == "white.png" and first["brightness"] == 1.0
        assert abs(second["brightness"] - 64 / 255) < 0.01 and len(second["prediction_id"]) == 32
        assert bad["error"]["code"] == "invalid_image"
        assert client.post("/api/v1/brightness/segment", data={}).status_code == 404

        page = client.post("/tasks/brightness/", data={"image": [(io.BytesIO(white), "w.png")]})
        assert page.status_code == 200 and '<p class="brightness">w.png: 1.0</p>' in page.get_data(as_text=True)
        home = client.get("/").get_data(as_text=True)
        assert 'href="/tasks/brightness/">Brightness meter</a>' in home and "Mean grey level of a photo" in home
        assert home.count('href="/tasks/brightness/"') == 2                       # menu and home card
        history = client.get("/history?task=brightness").get_data(as_text=True)
        assert history.count("brightness 1.00") == 2 and "brightness 0.25" in history
        models = client.get("/api/v1/models").get_json()["models"]
        assert "brightness" in {m["task"] for m in models}
        assert client.get("/tasks/salt/").status_code == 404        # tasks with their own pages keep them
    finally:
        BrightnessHandler.page.template_folder = None
        app.extensions["engine"].close()


def test_the_released_tasks_fill_the_menu_home_and_history(client):
    home = client.get("/").get_data(as_text=True)
    for title, url in (("Salt segmentation", "/salt/"), ("Rock classification", "/rocks/"),
                       ("Whale identification", "/whales/")):
        assert home.count(f'href="{url}">{title}</a>') == 2                       # menu and home card
    assert "Image similarity" not in home          # answered on the rocks page, no page of its own


def test_a_task_reaches_another_only_through_a_declared_dependency(tiny_model_dir, tmp_path, app):
    from app import default_tasks
    from app.rocks.handler import handler as rocks

    with pytest.raises(ValueError, match="'rocks' uses similarity, which is not registered"):
        make_app(tiny_model_dir, tmp_path / "alone", task_handlers=[h for h in default_tasks() if h.name != "similarity"])
    with app.app_context():
        assert rocks.dependency("similarity").name == "similarity"
        with pytest.raises(LookupError, match="does not declare 'whales'"):
            rocks.dependency("whales")
