"""Every POST endpoint against bad and unusual inputs (issue: reliability and security)."""
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.extensions import db
from app.records import Prediction

from .conftest import half_bright_tile, header_bomb_png, png_bytes

ENDPOINTS = ["/api/v1/salt/segment", "/api/v1/rocks/classify", "/api/v1/similarity/search"]


@pytest.fixture
def client_with_gallery(client, runner, rock_folder):
    assert runner.invoke(args=["gallery", "build", "similarity", "--data", str(rock_folder)]).exit_code == 0
    return client


def _good() -> bytes:
    return png_bytes(half_bright_tile())


def _truncated() -> bytes:
    data = png_bytes(np.random.default_rng(0).integers(0, 255, (101, 101), dtype=np.uint8))
    return data[: len(data) // 2]


BAD_FILES = {
    "empty": (b"", "empty_file"),
    "text_named_png": (b"this is not an image\n" * 10, "invalid_image"),
    "truncated_png": (_truncated(), "invalid_image"),
    "pdf": (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF", "invalid_image"),
    "svg_script": (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "invalid_image"),
}


def _unusual() -> dict[str, bytes]:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    out = {"16bit.png": png_bytes((rng.random((60, 80)) * 65535).astype(np.uint16)),
           "rgba.png": png_bytes(np.dstack([rgb, np.full((60, 80), 100, np.uint8)])),
           "one_pixel.png": png_bytes(np.zeros((1, 1), np.uint8))}
    for name, mode, fmt, kw in [("cmyk.jpg", "CMYK", "JPEG", {}), ("palette.gif", "P", "GIF", {}),
                                ("image.tiff", "RGB", "TIFF", {})]:
        buf = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buf, fmt, **kw)
        out[name] = buf.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", exif=exif.tobytes())
    out["exif_rotated.jpg"] = buf.getvalue()
    return out


def post(client, url, files, field="image", **form):
    data = {field: [(io.BytesIO(b), name) for name, b in files], **form}
    return client.post(url, data=data, content_type="multipart/form-data")


@pytest.mark.parametrize("url", ENDPOINTS)
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_4xx_with_error_body(client_with_gallery, url, case):
    data, code = BAD_FILES[case]
    resp = post(client_with_gallery, url, [(f"{case}.png", data)])
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert client_with_gallery.get("/api/v1/ready").status_code == 200


@pytest.mark.parametrize("url", ENDPOINTS)
def test_header_bomb_oversize_and_missing_fields(app, client_with_gallery, url):
    client = client_with_gallery
    resp = post(client, url, [("bomb.png", header_bomb_png(60000, 60000))])
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "image_too_large"
    assert post(client, url, []).status_code == 400
    wrong = post(client, url, [("a.png", _good())], field="file")
    assert wrong.status_code == 400 and wrong.get_json()["error"]["code"] == "missing_file"
    app.config["MAX_CONTENT_LENGTH"] = 2000
    big = post(client, url, [("a.png", b"\0" * 10000)])
    assert big.status_code == 413 and big.get_json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("url", ENDPOINTS)
def test_one_bad_file_among_good_ones_and_path_in_filename(app, client_with_gallery, url):
    resp = post(client_with_gallery, url, [("../../x/evil.png", _good()), ("bad.png", b"nope"), ("ok.png", _good())])
    assert resp.status_code == 200
    first, bad, ok = resp.get_json()["results"]
    assert first["filename"] == "evil.png" and "error" not in first
    assert bad["error"]["code"] == "invalid_image" and "error" not in ok
    with app.app_context():
        rows = db.session.scalars(db.select(Prediction)).all()
        assert sorted(r.filename for r in rows) == ["evil.png", "ok.png"]
    stored = list(Path(app.config["UPLOAD_FOLDER"]).rglob("*"))
    assert not any("evil" in p.name for p in stored)     # stored under generated names only


@pytest.mark.parametrize("url", ENDPOINTS)
def test_unusual_valid_images_are_answered(client_with_gallery, url):
    files = list(_unusual().items())
    resp = post(client_with_gallery, url, files)
    assert resp.status_code == 200
    results = resp.get_json()["results"]
    assert [r["filename"] for r in results] == [name for name, _ in files]
    assert all("error" not in r for r in results), results


def test_exif_rotation_reaches_the_salt_answer(client):
    img = np.full((40, 120), 20, np.uint8)
    img[:, :60] = 230
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    result = post(client, ENDPOINTS[0], [("r.jpg", buf.getvalue())]).get_json()["results"][0]
    assert (result["width"], result["height"]) == (40, 120)


@pytest.mark.parametrize("url,field,value,code", [
    ("/api/v1/salt/segment", "threshold", "1.5", "invalid_threshold"),
    ("/api/v1/salt/segment", "threshold", "x", "invalid_threshold"),
    ("/api/v1/similarity/search", "k", "0", "invalid_k"),
    ("/api/v1/similarity/search", "k", "1e9", "invalid_k"),
])
def test_bad_form_values(client_with_gallery, url, field, value, code):
    resp = post(client_with_gallery, url, [("a.png", _good())], **{field: value})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == code


@pytest.mark.parametrize("page", ["/salt/", "/rocks/"])
def test_browser_forms_show_the_message(client_with_gallery, page):
    resp = post(client_with_gallery, page, [("bad.png", b"not an image")])
    assert resp.status_code == 400 and "not a readable image" in resp.get_data(as_text=True)
