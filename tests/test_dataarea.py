"""The data area of section pictures: figures, screenshots and plain renderings of the shared SEG-Y files."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from geovision import dataarea
from geovision.imaging import to_gray
from geovision.rle import rle_decode

from .conftest import DATA
from .section_figures import STYLES, read_section, render

SEISMIC = DATA / "seismic-real"
FILES = ("volve10r12-full-twt-arb.sgy", "f3-ebcidctest.sgy")
needs_data = pytest.mark.skipif(not SEISMIC.is_dir(), reason="../shared/data/seismic-real is absent")
TOLERANCE_PX = 5   #: the found rectangle may sit this far inside or outside the plotted one


def with_fills(amplitudes: np.ndarray) -> np.ndarray:
    """The section as a land line is delivered: a top mute growing with offset and 30 % zero
    padding below the record (zero amplitude: mid-grey in the usual display)."""
    h, w = amplitudes.shape
    out = np.vstack([amplitudes, np.zeros((int(0.3 * h), w), np.float32)])
    mute = (0.05 * h + 0.15 * h * np.abs(np.arange(w) - w / 2) / w).astype(int)
    out[np.arange(out.shape[0])[:, None] < mute[None, :]] = 0.0
    return out


def found(rendered) -> tuple[np.ndarray, tuple]:
    image = Image.open(io.BytesIO(rendered.data))
    return dataarea.picture_no_data(np.asarray(image.convert("RGB")), to_gray(image))


@needs_data
@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("style", STYLES)
def test_the_found_data_area_is_the_plotted_section(name, style):
    section = with_fills(read_section(SEISMIC / name))
    rendered = render(section, style)
    no_data, box = found(rendered)
    assert np.abs(np.array(box) - np.array(rendered.box)).max() <= TOLERANCE_PX, (box, rendered.box)
    top, bottom, left, right = rendered.box
    outside = np.ones_like(no_data)
    outside[max(0, top - TOLERANCE_PX):bottom + TOLERANCE_PX, max(0, left - TOLERANCE_PX):right + TOLERANCE_PX] = False
    assert no_data[outside].all()                          # margins, titles, labels, colour bars
    fills = ~rendered.live
    fills[:top + TOLERANCE_PX] = fills[bottom - TOLERANCE_PX:] = False
    fills[:, :left + TOLERANCE_PX] = fills[:, right - TOLERANCE_PX:] = False
    assert no_data[fills].mean() > 0.9                     # the mute and the padding, at any grey (JPEG 60: 0.94)
    # the live section stays data; Volve's water column (near zero, not exactly) is drawn as a flat
    # fill and reported as no data too: 7.5 % of its live samples
    assert no_data[rendered.live].mean() < 0.1


def test_tiles_and_plain_sections_are_taken_whole():
    tile = np.random.default_rng(0).integers(0, 255, (101, 101)).astype(np.uint8)
    tile[60:, :] = 97                                       # a flat salt body at the bottom of a tile is data
    no_data, box = dataarea.picture_no_data(tile, tile / 255.0)
    assert box == (0, 101, 0, 101) and not no_data.any()
    section = np.random.default_rng(1).integers(0, 255, (300, 400)).astype(np.uint8)
    assert dataarea.plotted_area(section) == (0, 300, 0, 400)


@needs_data
def test_no_salt_outside_the_plotted_section_through_the_api(client):
    """The tiny model calls bright pixels salt: white margins, labels and the colour bar would be
    salt without the data area; with it, salt lies only inside the plotted rectangle."""
    rendered = render(with_fills(read_section(SEISMIC / FILES[0])), "figure-grey")
    client.application.config["SYNC_MAX_TILES"] = 10_000   # answered at once, not as a job
    resp = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(rendered.data), "figure.png")]})
    assert resp.status_code == 200, resp.get_json()
    (result,) = resp.get_json()["results"]
    image = Image.open(io.BytesIO(rendered.data))
    mask = rle_decode(result["rle_mask"], (image.height, image.width)).astype(bool)
    top, bottom, left, right = rendered.box
    inside = np.zeros_like(mask)
    inside[top:bottom, left:right] = True
    assert mask.any() and not (mask & ~inside).any()
    area = result["data_area"]
    assert area["source"] == "auto"
    assert abs(area["top"] - top) <= TOLERANCE_PX and abs(area["right"] - right) <= TOLERANCE_PX
    assert result["no_data_fraction"] > 1 - (bottom - top) * (right - left) / mask.size
    crop = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(rendered.data), "figure.png")],
                                                     "data_area": "0,0,50,40"}).get_json()["results"][0]
    assert crop["data_area"] == {"left": 0, "top": 0, "right": 50, "bottom": 40, "source": "user"}
    bad = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(rendered.data), "f.png")],
                                                    "data_area": "10,10,5,5"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_data_area"
    for value in ("inf,0,10,10", "nan,0,10,10", "1,2,3"):
        bad = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(rendered.data), "f.png")],
                                                        "data_area": value})
        assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_data_area", value


@needs_data
@pytest.mark.parametrize("style, min_r", [("figure-rwb", 0.99), ("figure-rwb-jpeg60", 0.6)])
def test_a_red_white_blue_figure_is_read_back_as_amplitudes(style, min_r):
    """Luma makes troughs and peaks the same dark grey; the position along the colour scale gives
    back the section that the grey figure shows (same amplitudes, same layout). JPEG 60 keeps the
    hue at half resolution: lobes thinner than 2 px lose their sign (r 0.70), not their strength."""
    from geovision import colourscale

    section = read_section(SEISMIC / FILES[0])
    top, bottom, left, right = render(section, "figure-grey").box
    grey = np.asarray(Image.open(io.BytesIO(render(section, "figure-grey").data)).convert("L"), np.float32)
    rgb = np.asarray(Image.open(io.BytesIO(render(section, style).data)).convert("RGB"))
    amplitude, scale = colourscale.amplitude_gray(rgb)
    assert scale == "seismic"
    inside = np.s_[top + 2:bottom - 2, left + 2:right - 2]
    r = np.corrcoef(amplitude[inside].ravel(), grey[inside].ravel())[0, 1]
    strength = np.corrcoef(np.abs(amplitude[inside] - 0.5).ravel(), np.abs(grey[inside] / 255 - 0.5).ravel())[0, 1]
    luma = np.corrcoef(to_gray(Image.fromarray(rgb))[inside].ravel(), grey[inside].ravel())[0, 1]
    assert r > min_r and strength > 0.95 and abs(luma) < 0.5, (r, strength, luma)
    assert colourscale.detect(np.asarray(Image.open(io.BytesIO(render(section, "figure-grey").data)).convert("RGB"))) is None


def test_grey_and_photographic_pictures_keep_luma():
    from geovision import colourscale

    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 255, (64, 64, 1), dtype=np.uint8), 3, axis=2)
    photo = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)       # every colour: far from any scale
    assert colourscale.amplitude_gray(grey) is None and colourscale.amplitude_gray(photo) is None
    ramp = np.array(colourscale._path(colourscale.SCALES["bwr"], 64)[0] * 255, np.uint8)[None].repeat(8, 0)
    amplitude, scale = colourscale.amplitude_gray(ramp)
    assert scale in ("bwr", "seismic") and np.all(np.diff(amplitude[0]) >= -1e-6)   # blue low -> red high


@pytest.mark.skipif(not (DATA / "seismic-real").is_dir(), reason="../shared/data/seismic-real is absent")
def test_a_scanned_figures_labels_and_ticks_are_no_data():
    """A figure as a scan of a printed report (tinted paper, scanner noise, blur, JPEG 75): its title,
    axis labels and tick numbers lie outside the data area found and are no data (never probabilities);
    the area is found within a few pixels of the plot's frame."""
    from PIL import ImageFilter

    from .section_figures import render_figure

    rendered = render_figure(read_section(DATA / "seismic-real" / "volve10r12-full-twt-arb.sgy"), size=(6, 4))
    paper = np.asarray(Image.open(io.BytesIO(rendered.data)).convert("RGB")).astype(np.float32)
    paper = paper * np.array([0.97, 0.95, 0.88]) + np.random.default_rng(0).normal(0, 6, paper.shape)
    scan = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))
    buf = io.BytesIO()
    scan.save(buf, "JPEG", quality=75)
    picture = np.asarray(Image.open(buf).convert("RGB"))
    no_data, (top, bottom, left, right) = dataarea.picture_no_data(picture, to_gray(Image.fromarray(picture)))
    t, b, l_, r = rendered.box
    assert max(abs(top - t), abs(bottom - b), abs(left - l_), abs(right - r)) <= 6, ((top, bottom, left, right), rendered.box)
    margin = np.ones(no_data.shape, bool)
    margin[t - 6:b + 6, l_ - 6:r + 6] = False
    assert no_data[margin].all()          # title, labels, ticks, colour bar: no data
