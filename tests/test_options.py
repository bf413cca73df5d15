"""Typed options (app.tasks.options): the API, the pages, the OpenAPI document and the handler read
one pydantic model per task, so they refuse the same values with the same message."""
import html
import io

import pytest

from app.gallery_search import SearchOptions
from app.salt.options import SaltOptions
from app.tasks.options import OptionError
from app.whales.options import WhalesOptions

from .conftest import half_bright_tile, png_bytes, rock_png


@pytest.mark.parametrize("field,value", [("threshold", "2"), ("threshold", "abc"), ("data_area", "1,2")])
def test_the_salt_api_and_page_refuse_alike(client, field, value):
    tile = lambda: [(io.BytesIO(png_bytes(half_bright_tile())), "t.png")]  # noqa: E731
    api = client.post("/api/v1/salt/segment", data={"image": tile(), field: value})
    assert api.status_code == 400
    error = api.get_json()["error"]
    assert error["code"] == f"invalid_{field}"
    page = client.post("/salt/", data={"image": tile(), field: value})
    assert page.status_code == 400 and error["message"] in html.unescape(page.get_data(as_text=True))


def test_the_similarity_api_and_the_rocks_page_share_the_search_options(client):
    api = client.post("/api/v1/similarity/search", data={"image": [(io.BytesIO(rock_png("marble")), "r.png")], "k": "0"})
    message = api.get_json()["error"]["message"]
    assert api.status_code == 400 and api.get_json()["error"]["code"] == "invalid_k"
    page = client.post("/rocks/", data={"image": [(io.BytesIO(rock_png("marble")), "r.png")], "k": "0"})
    assert page.status_code == 400 and message in html.unescape(page.get_data(as_text=True))


def test_the_openapi_fields_are_the_models(client):
    spec = client.get("/api/v1/openapi.json").get_json()

    def fields(path):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        return body["properties"]
    salt = fields("/api/v1/salt/segment")
    for name, schema in SaltOptions.openapi_fields().items():
        assert salt[name] == schema, name
    assert salt["slice"]["pattern"] and "segy_id" in salt
    assert {k: fields("/api/v1/similarity/search")[k] for k in ("k", "method")} == SearchOptions.openapi_fields()
    assert fields("/api/v1/whales/identify")["k"] == {**WhalesOptions.openapi_fields()["k"]}


def test_blank_means_default_and_parsed_values_reach_the_hooks():
    options = SaltOptions.parse({"threshold": "", "slice": "inline:12", "domain": " Depth ", "data_area": "1,2,30,40",
                                 "clicks": '[{"x": 3, "y": 4, "salt": false}]'}).hooks()
    assert options["threshold"] is None and str(options["spec"]) == "inline:12" and options["domain"] == "depth"
    assert options["data_area"] == (1, 2, 30, 40) and options["clicks"] == [{"x": 3, "y": 4, "salt": False}]
    assert SearchOptions.parse({}).hooks() == {"k": 10, "method": "embedding"}
    with pytest.raises(OptionError) as refused:
        WhalesOptions.parse({"viewpoint": "below"})
    assert refused.value.code == "invalid_viewpoint" and refused.value.status == 400
