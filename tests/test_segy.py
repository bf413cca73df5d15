"""SEG-Y input: geometry, slices, amplitude scaling, the API and the page (files built with segyio)."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import segyio

from app.salt import segy

from .conftest import DATA, N_IL, N_S, N_XL, survey, unstructured

#: (inlines, crosslines, samples) of the test survey; positive amplitudes (salt for the tiny
#: BrightIsSalt model, whose normalisation puts zero amplitude at its 0.5 cut) in the upper half


def test_parse_slice():
    assert segy.parse_slice("inline:12") == segy.SliceSpec("inline", 12.0)
    assert str(segy.parse_slice(" Crossline : 7 ")) == "crossline:7"
    assert str(segy.parse_slice("time:1200")) == "time:1200"
    assert segy.parse_slice("section") == segy.SliceSpec("section", None)
    assert segy.parse_slice("") is None and segy.parse_slice(None) is None
    for bad in ("inline", "depth:3", "inline:abc", "inline:1:2"):
        with pytest.raises(segy.SegyError):
            segy.parse_slice(bad)


def test_geometry_and_slices(tmp_path):
    path = tmp_path / "s.sgy"
    data = survey(path)
    g = segy.geometry(path)
    assert g["kind"] == "3d" and g["inlines"] == [1, N_IL, N_IL, 1] and g["crosslines"] == [1, N_XL, N_XL, 1]
    assert g["layout"] == "regular" and "warning" not in g
    assert g["samples"] == N_S and g["sample_interval_ms"] == 4.0 and g["default_slice"] == "inline:3"
    inline = segy.read_slice(path, segy.parse_slice("inline:2"))
    assert inline.shape == (N_S, N_XL) and np.allclose(inline, data[1].T, atol=1e-5)  # time downwards
    xline = segy.read_slice(path, segy.parse_slice("crossline:10"))
    assert xline.shape == (N_S, N_IL) and np.allclose(xline, data[:, 9].T, atol=1e-5)
    tslice = segy.read_slice(path, segy.parse_slice("time:42"))  # nearest sample: 40 ms = index 10
    assert tslice.shape == (N_IL, N_XL) and np.allclose(tslice, data[:, :, 10], atol=1e-5)
    for bad in ("inline:9", "crossline:0", "time:5000", "section"):
        with pytest.raises(segy.SegyError):
            segy.read_slice(path, segy.parse_slice(bad))


def test_unstructured_file_reads_as_one_section(tmp_path):
    path = tmp_path / "line.segy"
    data = unstructured(path)
    assert segy.geometry(path)["kind"] == "2d"
    section = segy.read_slice(path, segy.parse_slice("section"))
    assert section.shape == (80, 30) and np.allclose(section, data.T, atol=1e-5)
    with pytest.raises(segy.SegyError):
        segy.read_slice(path, segy.parse_slice("inline:1"))


def test_not_segy(tmp_path):
    path = tmp_path / "x.sgy"
    path.write_bytes(b"hello" * 100)
    with pytest.raises(segy.SegyError):
        segy.geometry(path)


def test_scale_amplitudes_clips_symmetrically_with_zero_at_mid_grey():
    a = np.concatenate([np.linspace(-1, 1, 999), [1000.0]]).astype(np.float32).reshape(10, 100)
    g = segy.scale_amplitudes(a)
    assert g.dtype == np.float32 and g.min() >= 0 and g.max() <= 1
    assert g.reshape(-1)[-1] == 1.0                     # the outlier is clipped
    assert g.reshape(-1)[499] == pytest.approx(0.5, abs=0.01)
    assert segy.scale_amplitudes(np.zeros((4, 4))).tolist() == np.full((4, 4), 0.5).tolist()


def post(client, files, **form):
    return client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(b), n) for n, b in files], **form},
                       content_type="multipart/form-data")


def test_api_segments_the_requested_slice(client, tmp_path):
    path = tmp_path / "survey.sgy"
    survey(path)
    raw = path.read_bytes()
    resp = post(client, [("survey.sgy", raw)], slice="inline:2")
    assert resp.status_code == 200, resp.get_json()
    (r,) = resp.get_json()["results"]
    assert r["slice"] == "inline:2" and (r["width"], r["height"]) == (N_XL, N_S)
    assert r["coverage"] == pytest.approx(0.5, abs=0.02)   # the positive upper half is salt
    default = post(client, [("survey.sgy", raw)]).get_json()["results"][0]
    assert default["slice"] == "inline:3"
    tslice = post(client, [("survey.sgy", raw)], slice="time:0").get_json()["results"][0]
    assert (tslice["width"], tslice["height"]) == (N_XL, N_IL) and tslice["coverage"] == 1.0


def test_api_segy_errors(app, client, tmp_path):
    path = tmp_path / "survey.segy"
    survey(path)
    raw = path.read_bytes()
    bad_spec = post(client, [("survey.segy", raw)], slice="inline")
    assert bad_spec.status_code == 400 and bad_spec.get_json()["error"]["code"] == "invalid_slice"
    missing = post(client, [("survey.segy", raw)], slice="inline:99")
    assert missing.status_code == 400 and missing.get_json()["error"]["code"] == "invalid_slice"
    junk = post(client, [("junk.sgy", b"not a seg-y file" * 300)])
    assert junk.status_code == 400 and junk.get_json()["error"]["code"] == "invalid_segy"
    # SEG-Y files have their own size limit, above MAX_CONTENT_LENGTH
    app.config["MAX_CONTENT_LENGTH"] = 20_000
    app.config["SEGY_MAX_BYTES"] = len(raw) + 10
    assert len(raw) > 20_000
    assert post(client, [("survey.segy", raw)], slice="crossline:3").status_code == 200
    app.config["SEGY_MAX_BYTES"] = len(raw) - 10
    too_big = post(client, [("survey.segy", raw)])
    assert too_big.status_code == 413 and too_big.get_json()["error"]["code"] == "segy_too_large"


def test_page_upload_pick_slice_and_download(client, tmp_path):
    path = tmp_path / "survey.sgy"
    survey(path)
    resp = client.post("/salt/", data={"image": [(io.BytesIO(path.read_bytes()), "survey.sgy")]},
                       content_type="multipart/form-data")
    assert resp.status_code == 302 and "/salt/segy/" in resp.headers["Location"]
    page = client.get(resp.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "survey.sgy" in html and "1 .. 5 (5, step 1)" in html and "1 .. 150 (150, step 1)" in html
    done = client.post(resp.headers["Location"], data={"kind": "crossline", "number": "7"})
    assert done.status_code == 302
    result = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "SEG-Y crossline:7" in result and "5x120 px" in result
    mask_url = re.search(r'href="([^"]*mask\.png[^"]*)"', result).group(1).replace("&amp;", "&")
    mask = client.get(mask_url)
    assert mask.status_code == 200 and mask.mimetype == "image/png"
    wrong = client.post(resp.headers["Location"], data={"kind": "inline", "number": "42"})
    assert wrong.status_code == 400 and "not in the survey" in wrong.get_data(as_text=True)
    assert client.get("/salt/segy/0123").status_code == 404


def write_traces(path, positions: list[tuple[int, int]], n_s: int = 60) -> np.ndarray:
    """A SEG-Y file of one trace per (inline, crossline) in ``positions``, in that order."""
    spec = segyio.spec()
    spec.format, spec.samples, spec.tracecount = 5, list(range(0, 4 * n_s, 4)), len(positions)
    data = np.random.default_rng(3).normal(0, 1, (len(positions), n_s)).astype(np.float32)
    with segyio.create(str(path), spec) as f:
        for i, (il, xl) in enumerate(positions):
            f.header[i] = {segyio.su.iline: il, segyio.su.xline: xl, segyio.su.offset: 1}
            f.trace[i] = data[i]
    return data


def test_a_2d_line_stored_as_one_crossline_is_a_section(tmp_path):
    path = tmp_path / "line.sgy"
    data = np.random.default_rng(4).normal(0, 1, (40, 1, 50)).astype(np.float32)   # 40 inlines x 1 crossline
    segyio.tools.from_array(str(path), data, dt=4000)
    g = segy.geometry(path)
    assert g["kind"] == "2d" and g["layout"] == "line" and g["default_slice"] == "section"
    assert "40 inline(s) x 1 crossline(s)" in g["warning"]
    section = segy.read_slice(path, segy.parse_slice("section"))
    assert section.shape == (50, 40) and np.allclose(section, data[:, 0].T)
    with pytest.raises(segy.SegyError, match="2-D line"):
        segy.read_slice(path, segy.parse_slice("inline:3"))


def _line(path, headers: list[dict], n_s: int = 40) -> None:
    spec = segyio.spec()
    spec.format, spec.samples, spec.tracecount = 5, list(range(n_s)), len(headers)
    with segyio.create(str(path), spec) as f:
        for i, h in enumerate(headers):
            f.header[i] = {segyio.su.offset: 1, **h}
            f.trace[i] = np.sin(np.arange(n_s, dtype=np.float32) * 0.3 + i)


def test_a_2d_line_is_drawn_against_its_cdp_or_shot_point_numbers(tmp_path, client):
    cdp, shot, none = tmp_path / "cdp.sgy", tmp_path / "shot.sgy", tmp_path / "none.sgy"
    _line(cdp, [{segyio.su.cdp: 2001 + 2 * i} for i in range(30)])
    _line(shot, [{segyio.su.cdp: 7, segyio.su.sp: 10500 + 25 * i, segyio.su.scalsp: -100} for i in range(30)])
    _line(none, [{segyio.su.cdp: 5 if i % 2 else 9} for i in range(30)])
    assert segy.geometry(cdp)["trace_axis"] == {"label": "CDP", "first": 2001.0, "step": 2.0}
    assert segy.geometry(shot)["trace_axis"] == {"label": "shot point", "first": 105.0, "step": 0.25}
    assert segy.geometry(none)["trace_axis"] == {"label": "trace", "first": 1, "step": 1}
    (r,) = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(cdp.read_bytes()), "cdp.sgy")]}
                       ).get_json()["results"]
    assert r["axes"]["x"] == {"label": "CDP", "first": 2001.0, "step": 2.0}


def test_irregular_surveys_are_read_by_trace_headers(tmp_path, client):
    path = tmp_path / "holes.sgy"
    positions = [(il, xl) for il in (10, 14, 18) for xl in range(100, 110) if not (il == 14 and xl in (103, 104))]
    data = write_traces(path, positions)
    g = segy.geometry(path)
    assert g["kind"] == "3d" and g["layout"] == "irregular" and g["missing_traces"] == 2
    assert g["inlines"] == [10, 18, 3, 4] and g["crosslines"] == [100, 109, 10, 1] and "no data" in g["warning"]
    inline = segy.read_slice(path, segy.parse_slice("inline:14"))
    assert inline.shape == (60, 10) and np.isnan(inline[:, 3:5]).all() and not np.isnan(inline[:, [0, 5]]).any()
    assert np.allclose(inline[:, 5], data[positions.index((14, 105))])
    with pytest.raises(segy.SegyError, match=r"inlines 10\.\.18 in steps of 4"):
        segy.read_slice(path, segy.parse_slice("inline:12"))
    time_slice = segy.read_slice(path, segy.parse_slice("time:8"))
    assert time_slice.shape == (3, 10) and np.isnan(time_slice[1, 3:5]).all()
    answer = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(path.read_bytes()), "holes.sgy")],
                                                        "slice": "inline:14"}).get_json()["results"][0]
    assert answer["no_data_fraction"] == pytest.approx(2 / 10)          # the missing traces


@pytest.mark.skipif(not (DATA / "seismic-real").is_dir(), reason="../shared/data/seismic-real absent")
@pytest.mark.parametrize("name, kind, layout, values", [
    ("f3.sgy", "3d", "regular", "amplitude"), ("f3-lsb.sgy", "3d", "regular", "amplitude"),
    ("f3-withdead.sgy", "3d", "irregular", "amplitude"), ("f3-ebcidctest.sgy", "3d", "regular", "amplitude"),
    ("volve10r12-full-twt-arb.sgy", "2d", "line", "amplitude"),
    ("volve10r12-full-z-il10117sub.sgy", "2d", "line", "amplitude"),
    ("volve10-migvel-depth-sub3d.sgy", "3d", "regular", "velocity")])
def test_geometry_of_the_shared_real_files(name, kind, layout, values):
    g = segy.geometry(DATA / "seismic-real" / name)
    assert (g["kind"], g["layout"], g["values"]) == (kind, layout, values)
    if name.startswith("volve10-migvel"):
        assert g["inlines"][3] == 4 and g["crosslines"][3] == 4              # the step-4 grid


def test_a_volume_is_stored_once_and_reused_by_its_segy_id(client, app, tmp_path):
    path = tmp_path / "s.sgy"
    survey(path)
    post = lambda **form: client.post("/api/v1/salt/segment", data=form).get_json()   # noqa: E731
    first = post(image=[(io.BytesIO(path.read_bytes()), "s.sgy")], slice="inline:2")["results"][0]
    again = post(image=[(io.BytesIO(path.read_bytes()), "copy.sgy")], slice="inline:2")["results"][0]
    assert again["segy_id"] == first["segy_id"]
    stored = list((Path(app.config["UPLOAD_FOLDER"]) / "segy").glob("*/volume.sgy"))
    assert len(stored) == 1                                      # one copy on disk
    page = client.get(f"/salt/result/{first['prediction_id']}").get_data(as_text=True)
    assert f'/salt/segy/{first["segy_id"]}">pick another slice</a>' in page
    assert "Kaggle submission CSV" not in page                  # the Kaggle CSV is for 101x101 tiles only
    reused = post(segy_id=first["segy_id"], slice="crossline:7")["results"][0]
    assert reused["segy_id"] == first["segy_id"] and reused["slice"] == "crossline:7"
    assert (reused["width"], reused["height"]) == (N_IL, N_S)
    unknown = client.post("/api/v1/salt/segment", data={"segy_id": "0" * 32, "slice": "inline:2"})
    assert unknown.status_code == 400 and unknown.get_json()["error"]["code"] == "invalid_segy"


def test_results_have_axes_a_legend_and_a_probability_view(client, tmp_path):
    from PIL import Image

    from geovision.figures import LEFT, TOP, nice_step

    path = tmp_path / "s.sgy"
    survey(path)
    r = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(path.read_bytes()), "s.sgy")],
                                                   "slice": "inline:2", "domain": "depth"}).get_json()["results"][0]
    assert r["axes"] == {"x": {"label": "crossline", "first": 1, "step": 1},
                         "y": {"label": "depth (m)", "first": 0.0, "step": 4.0}} and r["domain"] == "depth"
    figure = client.get(f"/salt/files/{r['prediction_id']}/figure.png")
    probabilities = client.get(f"/salt/files/{r['prediction_id']}/probabilities.png")
    assert figure.status_code == probabilities.status_code == 200
    with Image.open(io.BytesIO(figure.data)) as im:
        assert im.size[0] > N_XL + LEFT and im.size[1] > N_S + TOP         # framed with axes
        assert np.asarray(im.convert("L"))[TOP + 5, LEFT + 5] < 250        # the section is inside the frame
    with Image.open(io.BytesIO(probabilities.data)) as im:
        assert im.size[0] > N_XL + LEFT + 60                               # with its colour bar
    assert nice_step(1000) == 200 and nice_step(7) == 2 and nice_step(0.3) == 0.05
    bad = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(path.read_bytes()), "s.sgy")],
                                                     "domain": "furlongs"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_domain"


def test_the_slice_page_takes_the_sample_domain(client, tmp_path):
    path = tmp_path / "s.sgy"
    survey(path)
    segy_id = client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(path.read_bytes()), "s.sgy")]}
                          ).get_json()["results"][0]["segy_id"]
    page = client.get(f"/salt/segy/{segy_id}").get_data(as_text=True)
    assert 'name="domain"' in page and "depth (m)" in page
    answer = client.post(f"/salt/segy/{segy_id}", data={"kind": "crossline", "number": "7", "domain": "depth"})
    assert answer.status_code == 302
    result = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "inline across and depth (m) down" in result
