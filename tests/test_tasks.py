"""The task-handler recipe: a realistic fifth task (an option, an error code of its own, a page) is
one task package (handler, options, parts, page), two templates, one models/<task>/ folder, one
line of registration and its rows in docs/API.md; then it has an API route with its OpenAPI
fields and codes, a page, a menu entry, a home card and a history cell without any other edit.
docs/ARCHITECTURE.md ("Adding a model") lists the same places; a test counts them."""
import io
import re
from typing import Literal

import numpy as np
import pytest
import torch
from flask import Blueprint, current_app, render_template
from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from PIL import Image
from pydantic import Field, field_validator
from wtforms import SelectField, SubmitField
from wtforms.fields import SelectChoice

from app import default_tasks
from app.task_pages import answer_page_uploads
from app.tasks import Outcome, Prepared, TaskApi, TaskHandler, TaskPage
from app.tasks.options import Checked, TaskOptions, form_options
from app.tasks.registry import get
from geovision.imaging import ImageError, decode_image, to_gray

from .conftest import ROOT, make_app, png_bytes

#: What a realistic fifth task touches, in docs/ARCHITECTURE.md's order; each is done below.
PLACES = ("handler", "options", "api and page parts", "page: blueprint and form", "templates",
          "models/<task>/ folder", "registration", "docs/API.md")


class MeanBrightness(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).unsqueeze(1)


class BrightnessOptions(TaskOptions):                                  # place 2: the options
    scale: Literal["fraction", "percent"] = Field("fraction", description="fraction (0 black .. 1 white) or percent")

    @field_validator("scale", mode="before")
    @classmethod
    def _scale(cls, value):
        if str(value).strip().lower() not in ("fraction", "percent"):
            raise ValueError("scale must be fraction or percent")
        return str(value).strip().lower()


bp = Blueprint("brightness", __name__, url_prefix="/brightness")      # place 4: the page


class BrightnessForm(FlaskForm):
    image = MultipleFileField("Photos")
    scale = SelectField("Scale", default="fraction", choices=[SelectChoice("fraction", "0..1"), SelectChoice("percent", "%")],
                        validate_choice=False, validators=[Checked(BrightnessOptions)])
    submit = SubmitField("Measure")


@bp.route("/", methods=["GET", "POST"])
def upload():
    form = BrightnessForm()
    page = answer_page_uploads(form, get("brightness"), form_options(BrightnessOptions, form) or {})
    return render_template("brightness/upload.html", form=form, answers=page.answers, errors=page.errors), page.status


class BrightnessApi(TaskApi):                                          # place 3: the parts
    action = "measure"
    fields = BrightnessOptions.openapi_fields()
    result_schema = {"brightness": {"type": "number"}}
    error_codes = {"too_dark": (422, "a black photo: nothing to measure")}
    errors = (*BrightnessOptions.error_codes(), "too_dark")


class BrightnessPage(TaskPage):
    title = "Brightness meter"
    blurb = "Mean grey level of a photo"
    blueprint = bp
    result_template = "brightness/_result.html"

    def history_text(self, summary: dict) -> str:
        return f"brightness {summary['brightness']:.2f}"


class BrightnessHandler(TaskHandler):                                  # place 1: the handler
    """The fifth task: mean grey level of a photo."""

    name = "brightness"
    api = BrightnessApi()
    page = BrightnessPage()
    options_model = BrightnessOptions

    def preprocess(self, item, ckpt, scale: str = "fraction") -> Prepared:
        image = decode_image(item.data, current_app.config["MAX_IMAGE_PIXELS"])
        grey = np.asarray(Image.fromarray((to_gray(image) * 255).astype(np.uint8)).resize((32, 32)), np.float32) / 255
        if not grey.any():
            raise ImageError("the photo is black: nothing to measure", code="too_dark", status=422)
        return Prepared(torch.from_numpy(grey)[None, None], image.size)

    def postprocess(self, prepared, outputs, ckpt, scale: str = "fraction") -> Outcome:
        value = float(outputs[0, 0]) * (100 if scale == "percent" else 1)
        result = {"brightness": round(value, 4)}
        return Outcome(result, result)


def toy_app(tiny_model_dir, tmp_path):
    models = tmp_path / "models"                                  # place 6: a models/<task>/ folder
    models.mkdir()
    for task in ("salt", "rocks", "similarity", "whales"):
        (models / task).symlink_to(tiny_model_dir / task)
    (models / "brightness").mkdir()
    torch.jit.script(MeanBrightness()).save(str(models / "brightness" / "model.pt"))
    (models / "brightness" / "meta.json").write_text(
        '{"task": "brightness", "name": "mean-grey", "version": "1", "input_shape": [1, 32, 32],'
        ' "normalization": {"mean": [0.0], "std": [1.0]}, "metrics": {}}')
    templates = tmp_path / "templates" / "brightness"            # place 5: the page and one result
    templates.mkdir(parents=True)
    (templates / "_result.html").write_text('<p class="brightness">{{ r.filename }}: {{ r.brightness }}</p>')
    (templates / "upload.html").write_text(
        '{% extends "base.html" %}{% block content %}<form method="post" enctype="multipart/form-data">'
        '{{ form.image() }}{{ form.scale() }}{% for e in form.scale.errors %}<p class="error">{{ e }}</p>{% endfor %}'
        '</form>{% for r in answers %}{% include "brightness/_result.html" %}{% endfor %}'
        '{% for e in errors %}<p class="error">{{ e.filename }}: {{ e.error.message }}</p>{% endfor %}{% endblock %}')
    BrightnessHandler.page.template_folder = tmp_path / "templates"
    # place 7: one line of registration
    return make_app(models, tmp_path, task_handlers=[*default_tasks(), BrightnessHandler()])


def documented_codes() -> set[str]:
    """The error codes of docs/API.md's table (place 8: a new task's codes go there)."""
    return set(re.findall(r"^\| `([a-z_]+)` \| \d{3} \|", (ROOT / "docs" / "API.md").read_text(), re.M))


def test_a_fifth_task_is_served_through_the_api_page_menu_and_history(tiny_model_dir, tmp_path):
    app = toy_app(tiny_model_dir, tmp_path)
    try:
        client = app.test_client()
        white, grey = png_bytes(np.full((40, 60), 255, np.uint8)), png_bytes(np.full((40, 60), 64, np.uint8))
        black = png_bytes(np.zeros((40, 60), np.uint8))
        response = client.post("/api/v1/brightness/measure",
                               data={"image": [(io.BytesIO(white), "white.png"), (io.BytesIO(grey), "grey.png"),
                                               (io.BytesIO(b"junk"), "junk.png"), (io.BytesIO(black), "black.png")]})
        assert response.status_code == 200
        first, second, bad, dark = response.get_json()["results"]
        assert first["filename"] == "white.png" and first["brightness"] == 1.0
        assert abs(second["brightness"] - 64 / 255) < 0.01 and len(second["prediction_id"]) == 32
        assert bad["error"]["code"] == "invalid_image" and dark["error"]["code"] == "too_dark"
        only_dark = client.post("/api/v1/brightness/measure", data={"image": [(io.BytesIO(black), "b.png")]})
        assert only_dark.status_code == 422 and only_dark.get_json()["error"]["code"] == "too_dark"
        percent = client.post("/api/v1/brightness/measure", data={"image": [(io.BytesIO(white), "w.png")], "scale": "percent"})
        assert percent.get_json()["results"][0]["brightness"] == 100.0
        refused = client.post("/api/v1/brightness/measure", data={"image": [(io.BytesIO(white), "w.png")], "scale": "kelvin"})
        assert refused.status_code == 400 and refused.get_json()["error"] == {
            "code": "invalid_scale", "message": "scale must be fraction or percent"}
        assert client.post("/api/v1/brightness/segment", data={}).status_code == 404

        page = client.post("/brightness/", data={"image": [(io.BytesIO(white), "w.png")], "scale": "percent"})
        assert page.status_code == 200 and '<p class="brightness">w.png: 100.0</p>' in page.get_data(as_text=True)
        page = client.post("/brightness/", data={"image": [(io.BytesIO(white), "w.png")], "scale": "kelvin"})
        assert page.status_code == 400 and "scale must be fraction or percent" in page.get_data(as_text=True)
        home = client.get("/").get_data(as_text=True)
        assert 'href="/brightness/">Brightness meter</a>' in home and "Mean grey level of a photo" in home
        assert home.count('href="/brightness/"') == 2                        # menu and home card
        history = client.get("/history?task=brightness").get_data(as_text=True)
        assert "brightness 1.00" in history and "brightness 0.25" in history and history.count("brightness 100.00") == 2
        models = client.get("/api/v1/models").get_json()["models"]
        assert "brightness" in {m["task"] for m in models}
        spec = client.get("/api/v1/openapi.json").get_json()             # its fields and codes, no server edit
        body = spec["paths"]["/api/v1/brightness/measure"]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert body["schema"]["properties"]["scale"]["enum"] == ["fraction", "percent"]
        assert {"too_dark", "invalid_scale"} <= set(spec["components"]["schemas"]["ErrorCode"]["enum"])
        # place 8: until docs/API.md lists them, the docs-table test would name exactly these codes
        assert set(app.extensions["error_codes"]) - documented_codes() == {"too_dark", "invalid_scale"}
    finally:
        BrightnessHandler.page.template_folder = None
        app.extensions["engine"].close()


def test_docs_count_the_places_a_fifth_task_touches():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text[text.index("## Adding a model"):]
    section = section[:section.index("\n## ", 5)] if "\n## " in section[5:] else section
    items = re.findall(r"^(\d+)\. \*\*", section, re.M)
    assert [int(i) for i in items] == list(range(1, len(PLACES) + 1))
    assert f"touches {len(PLACES)} places" in section


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
