"""Salt over whole 3-D SEG-Y volumes (``slice=volume``): the job, its SEG-Y answer, its limits,
cancel and restart, bounded memory, the CLI and real surveys."""
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import segyio

from geovision.rle import rle_decode

from .conftest import ROOT, make_app, unstructured
from .test_browser import browser  # noqa: F401 - the Chromium fixture
from .test_jobs import wait_for

REAL = ROOT.parent / "shared" / "data" / "seismic-real"
HEADERS = (segyio.TraceField.INLINE_3D, segyio.TraceField.CROSSLINE_3D, segyio.TraceField.CDP_X,
           segyio.TraceField.CDP_Y, segyio.TraceField.SourceGroupScalar, segyio.TraceField.TRACE_SAMPLE_COUNT,
           segyio.TraceField.TRACE_SAMPLE_INTERVAL)


def cube(path: Path, n_il: int = 6, n_xl: int = 40, n_s: int = 90, first_il: int = 100, first_xl: int = 300,
         dead: tuple[int, int] | None = (2, 7), mute: int = 12, skip: set | None = None) -> np.ndarray:
    """A 3-D SEG-Y (int16 amplitudes, format 3) with CDP X/Y on a 25 m x 12.5 m grid (scalar -100),
    a dead trace at ``dead`` (inline index, crossline index), ``mute`` zero samples on top, and
    the grid positions in ``skip`` left without a trace. Returns the amplitudes (il, xl, samples)."""
    rng = np.random.default_rng(3)
    data = (rng.normal(0, 1, (n_il, n_xl, n_s)) * 3000).astype(np.float32)
    data[:, : n_xl // 2, n_s // 2:] += 9000                     # a bright body (salt for the tiny model)
    data[:, :, :mute] = 0
    if dead is not None:
        data[dead] = 0
    positions = [(i, j) for i in range(n_il) for j in range(n_xl) if (i, j) not in (skip or set())]
    spec = segyio.spec()
    spec.format, spec.samples, spec.tracecount = 3, list(range(0, 4 * n_s, 4)), len(positions)
    with segyio.create(str(path), spec) as f:
        f.bin.update({segyio.BinField.Interval: 4000, segyio.BinField.Samples: n_s, segyio.BinField.Format: 3,
                      segyio.BinField.MeasurementSystem: 1})
        for t, (i, j) in enumerate(positions):
            f.header[t] = {segyio.TraceField.INLINE_3D: first_il + i, segyio.TraceField.CROSSLINE_3D: first_xl + j,
                           segyio.TraceField.CDP_X: int((600000 + 12.5 * j) * 100),
                           segyio.TraceField.CDP_Y: int((6700000 + 25 * i) * 100),
                           segyio.TraceField.SourceGroupScalar: -100, segyio.TraceField.TRACE_SAMPLE_COUNT: n_s,
                           segyio.TraceField.TRACE_SAMPLE_INTERVAL: 4000}
            f.trace[t] = np.clip(data[i, j], -32000, 32000).astype(np.int16)
    return data


@pytest.fixture
def volume_app(tiny_model_dir, tmp_path):
    app = make_app(tiny_model_dir, tmp_path, SYNC_MAX_TILES=4, MAX_BATCH_SIZE=4)
    yield app
    app.extensions["jobs"].pool.shutdown(wait=True, cancel_futures=True)
    app.extensions["engine"].close()


def send(client, path: Path, route: str = "jobs", **form):
    with open(path, "rb") as fh:
        return client.post(f"/api/v1/salt/{route}", data={"image": [(io.BytesIO(fh.read()), path.name)], **form})


def finish(client, response) -> dict:
    assert response.status_code == 202, response.get_json()
    return wait_for(client, response.get_json()["status_url"].removeprefix("http://localhost"), timeout=60)


def fetch(client, url: str, target: Path) -> Path:
    response = client.get(url.removeprefix("http://localhost"))
    assert response.status_code == 200
    target.write_bytes(response.data)
    return target


def test_a_volume_job_answers_a_segy_volume_with_the_inputs_geometry(volume_app, tmp_path):
    client = volume_app.test_client()
    src = tmp_path / "survey.sgy"
    data = cube(src)
    done = finish(client, send(client, src, slice="volume", threshold="0.5"))
    assert done["status"] == "done" and done["tiles_total"] == 6 and done["tiles_done"] == 6   # counted in inlines
    assert done["slice"] == "volume" and done["fuse"] == "inline" and done["volume"]["inlines"] == [100, 105, 6, 1]
    answer = fetch(client, done["segy_url"], tmp_path / "salt.sgy")
    with segyio.open(str(src), ignore_geometry=True) as a, segyio.open(str(answer), ignore_geometry=True) as b:
        assert b.tracecount == a.tracecount and list(b.samples) == list(a.samples) and int(b.format) == 5
        for field in HEADERS:
            assert np.array_equal(a.attributes(field)[:], b.attributes(field)[:]), field
        assert b.bin[segyio.BinField.Interval] == 4000 and b.bin[segyio.BinField.Format] == 5
        text = segyio.tools.wrap(b.text[0])
        assert "salt probability" in text and "tiny-bright-is-salt" in text and "threshold 0.5" in text
        probs = np.asarray(b.trace.raw[:]).reshape(data.shape)
    assert np.isfinite(probs).all() and probs.min() >= 0 and probs.max() <= 1
    assert (probs[2, 7] == 0).all() and (probs[:, :, :12] == 0).all()      # dead trace and top mute: no data
    assert probs[:, :20, 60:].mean() > 0.5 > probs[:, 20:, 60:].mean()      # the bright body is found
    mask = np.load(io.BytesIO(client.get(done["mask_npy_url"].removeprefix("http://localhost")).data))
    assert mask.shape == data.shape and mask.dtype == np.uint8 and (mask[2, 7] == 255).all()
    assert done["salt_samples"] == int((mask == 1).sum()) and 0 < done["salt_fraction"] < 1
    assert done["bin_area_m2"] == pytest.approx(312.5)                       # 25 m x 12.5 m
    assert sum(done["salt_area_m2"]) == pytest.approx(done["salt_samples"] * 312.5, rel=1e-3)
    assert done["salt_volume"] == pytest.approx(done["salt_samples"] * 312.5 * 4, rel=1e-3)
    assert done["volume_unit"] == "m2*ms"
    for k, inline in enumerate(range(100, 106)):           # each inline is the 2-D answer for it
        one = client.post("/api/v1/salt/segment", data={"segy_id": done["segy_id"], "slice": f"inline:{inline}",
                                                        "threshold": "0.5"})
        (result,) = one.get_json()["results"]
        assert np.array_equal(rle_decode(result["rle_mask"], (90, 40)), mask[k].T == 1), inline


def test_fused_volume_averages_the_crossline_pass(volume_app, tmp_path):
    client = volume_app.test_client()
    src = tmp_path / "survey.sgy"
    cube(src, n_il=4, n_xl=30, n_s=60)
    inline = finish(client, send(client, src, slice="volume"))
    fused = finish(client, send(client, src, slice="volume", fuse="inline+crossline"))
    assert fused["status"] == "done" and fused["tiles_total"] == 4 + 30 and fused["fuse"] == "inline+crossline"
    def read(url, name):
        with segyio.open(str(fetch(client, url, tmp_path / name)), ignore_geometry=True) as f:
            return np.asarray(f.trace.raw[:])

    a, b = read(inline["segy_url"], "a.sgy"), read(fused["segy_url"], "b.sgy")
    assert a.shape == b.shape and not np.array_equal(a, b) and np.isfinite(b).all() and 0 <= b.min() <= b.max() <= 1
    assert client.post("/api/v1/salt/jobs", data={"segy_id": inline["segy_id"], "slice": "volume", "fuse": "both"}
                       ).get_json()["error"]["code"] == "invalid_fuse"


def test_volume_refusals_come_before_any_work(volume_app, tmp_path):
    from app.records import Job

    client = volume_app.test_client()
    line = tmp_path / "line.sgy"
    unstructured(line)
    body = send(client, line, slice="volume").get_json()
    assert body["error"]["code"] == "invalid_slice" and "2-D line" in body["error"]["message"]
    src = tmp_path / "survey.sgy"
    cube(src)
    volume_app.config["VOLUME_MAX_SAMPLES"] = 1000
    response = send(client, src, slice="volume")
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "volume_too_large"
    assert "6 inlines x 40 crosslines x 90 samples" in response.get_json()["error"]["message"]
    with volume_app.app_context():
        assert Job.query.count() == 0
    picture = client.post("/api/v1/salt/jobs", data={"image": [(io.BytesIO(src.read_bytes()[:10]), "x.png")],
                                                     "slice": "volume"})
    assert picture.status_code == 400


def test_missing_traces_are_filled_and_said(volume_app, tmp_path):
    client = volume_app.test_client()
    src = tmp_path / "holes.sgy"
    cube(src, n_il=3, n_xl=20, n_s=40, skip={(0, 3), (1, 10)}, dead=None)
    done = finish(client, send(client, src, slice="volume"))
    assert done["status"] == "done" and done["missing_traces"] == 2 and "no trace" in done["warning"]
    mask = np.load(io.BytesIO(client.get(done["mask_npy_url"].removeprefix("http://localhost")).data))
    assert (mask[0, 3] == 255).all() and (mask[1, 10] == 255).all()
    with segyio.open(str(fetch(client, done["segy_url"], tmp_path / "out.sgy")), ignore_geometry=True) as f:
        assert f.tracecount == 3 * 20 - 2


def test_cancel_and_restart_of_a_volume_job(volume_app, tmp_path):
    from .test_jobs import slow_down

    slow_down(volume_app, 0.05)
    client = volume_app.test_client()
    src = tmp_path / "survey.sgy"
    cube(src, n_il=12, n_xl=40, n_s=90)
    job = send(client, src, slice="volume").get_json()
    url = job["status_url"].removeprefix("http://localhost")
    wait_for(client, url, statuses=("running",))
    assert client.delete(url).get_json()["status"] == "cancelled"
    assert wait_for(client, url)["status"] == "cancelled"
    # a server stopping mid-volume puts the job back in the queue; the next start runs it whole
    runner = volume_app.extensions["jobs"]
    job = send(client, src, slice="volume").get_json()
    url = job["status_url"].removeprefix("http://localhost")
    wait_for(client, url, statuses=("running",))
    runner.stopping = True
    assert wait_for(client, url, statuses=("queued",))["status"] == "queued"
    runner.stopping = False
    runner.submit(job["job_id"])
    done = wait_for(client, url, timeout=60)
    assert done["status"] == "done" and done["tiles_done"] == 12


def test_memory_stays_bounded_on_a_volume_larger_than_the_budget(tiny_model_dir, tmp_path):
    """The CLI on a 72 MB cube in a fresh process: peak RSS grows by less than a 24 MB budget."""
    budget_mb = 24
    src = tmp_path / "big.sgy"
    n_il, n_xl, n_s = 160, 150, 750
    spec = segyio.spec()
    spec.format, spec.samples, spec.ilines, spec.xlines, spec.sorting = 5, list(range(0, 4 * n_s, 4)), \
        list(range(1, n_il + 1)), list(range(1, n_xl + 1)), 2
    rng = np.random.default_rng(0)
    with segyio.create(str(src), spec) as f:
        for i in range(n_il):
            for j in range(n_xl):
                t = i * n_xl + j
                f.header[t] = {segyio.TraceField.INLINE_3D: i + 1, segyio.TraceField.CROSSLINE_3D: j + 1}
            f.iline[i + 1] = rng.normal(0, 1, (n_xl, n_s)).astype(np.float32)
    assert src.stat().st_size > 3 * budget_mb * 2 ** 20
    script = textwrap.dedent(f"""
        import json, resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.conftest import make_app
        from pathlib import Path
        app = make_app(Path({str(tiny_model_dir)!r}), Path({str(tmp_path)!r}) / "app")
        runner = app.test_cli_runner()
        warm = runner.invoke(args=["predict", "salt", "--volume", {str(tmp_path / "warm.sgy")!r}, "-o",
                                   {str(tmp_path / "warm-out.sgy")!r}])
        assert warm.exit_code == 0, warm.output
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = runner.invoke(args=["predict", "salt", "--volume", {str(src)!r}, "-o", {str(tmp_path / "out.sgy")!r}])
        assert result.exit_code == 0, result.output
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"before_kb": before, "after_kb": after}}))
    """)
    cube(tmp_path / "warm.sgy", n_il=3, n_xl=150, n_s=750, dead=None)   # same line size: the pipeline's own peak
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    growth_mb = (figures["after_kb"] - figures["before_kb"]) / 1024
    assert growth_mb < budget_mb, figures
    with segyio.open(str(tmp_path / "out.sgy")) as f:
        assert len(f.ilines) == n_il and len(f.xlines) == n_xl and len(f.samples) == n_s


def test_the_cli_writes_the_file_the_api_answers(volume_app, tmp_path):
    client = volume_app.test_client()
    src = tmp_path / "survey.sgy"
    cube(src, n_il=3, n_xl=30, n_s=50)
    done = finish(client, send(client, src, slice="volume"))
    api = fetch(client, done["segy_url"], tmp_path / "api.sgy")
    result = volume_app.test_cli_runner().invoke(args=["predict", "salt", "--volume", str(src), "-o", str(tmp_path / "cli.sgy")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli.sgy").read_bytes() == api.read_bytes()
    assert "salt" in result.output and "cli.sgy" in result.output


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/seismic-real is absent")
def test_real_surveys_f3_runs_whole_and_the_velocity_cube_is_refused(volume_app, tmp_path):
    client = volume_app.test_client()
    done = finish(client, send(client, REAL / "f3.sgy", slice="volume"))
    assert done["status"] == "done", done
    with segyio.open(str(fetch(client, done["segy_url"], tmp_path / "f3-salt.sgy"))) as f, \
            segyio.open(str(REAL / "f3.sgy")) as src:
        assert list(f.ilines) == list(src.ilines) and list(f.xlines) == list(src.xlines)
        assert len(f.samples) == len(src.samples) == 75
        assert np.isfinite(segyio.tools.cube(f)).all()
    velocity = send(client, REAL / "volve10-migvel-depth-sub3d.sgy", slice="volume")
    assert velocity.status_code == 400 and velocity.get_json()["error"]["code"] == "not_amplitudes"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="Debian chromium not installed (make browser)")
def test_the_viewer_in_chromium_moves_through_the_volume(tmp_path, tiny_model_dir, browser):  # noqa: F811 - the fixture
    """A user uploads a survey, asks for the whole volume, follows the job, moves the sliders."""
    from bench.server import LiveServer

    from .test_browser import SHOTS, _pixels

    src = tmp_path / "survey.sgy"
    cube(src, n_il=8, n_xl=60, n_s=120)
    server = LiveServer(tmp_path, tiny_model_dir)
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{server.url}/salt/")
        page.set_input_files("input[name=image]", str(src))
        page.click("input[type=submit]")
        page.wait_for_url("**/salt/segy/**")
        page.select_option("select[name=kind]", "volume")
        page.click("input[type=submit]")
        page.wait_for_url("**/salt/result/**", timeout=60_000)     # the job page follows it to the viewer
        assert "Salt volume" in page.content() and "salt.sgy" in page.content()
        pictures = {}
        for kind in ("inline", "crossline", "time"):
            img = page.locator(f"#picture-{kind}")
            assert page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
            pictures[kind] = (img.get_attribute("src"), _pixels(page, img.get_attribute("src")))
        page.screenshot(path=str(SHOTS / "volume_viewer.png"), full_page=True)
        slider = page.locator("#slider-inline")
        slider.focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")                        # inline 103 -> 106
        page.wait_for_function("() => document.querySelector('#picture-inline').src.includes('/inline/106')")
        img = page.locator("#picture-inline")
        assert page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
        assert page.locator("#value-inline").inner_text() == "106"
        moved = _pixels(page, img.get_attribute("src"))
        assert moved.shape == pictures["inline"][1].shape and not np.array_equal(moved, pictures["inline"][1])
        time_slider = page.locator("#slider-time")
        time_slider.fill("300")
        page.wait_for_function("() => document.querySelector('#picture-time').src.includes('/time/300')")
        assert page.request.get(server.url + page.locator("#picture-time").get_attribute("src")).status == 200
        page.screenshot(path=str(SHOTS / "volume_viewer_moved.png"), full_page=True)
        assert not errors, errors
    finally:
        server.stop()
