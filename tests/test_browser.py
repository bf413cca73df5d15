"""End-to-end in a real browser: Playwright driving Debian's Chromium against gunicorn."""
from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.server import LiveServer

from .conftest import DATA, png_bytes

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed (make browser)")]
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", "/tmp/geovision-screenshots"))


def _salt_tile(tmp_path: Path) -> Path:
    """A TGS tile with much salt (6,000-9,000 of its 10,201 pixels: a mask any usable model finds,
    with an edge to see) when the data is present, else a synthetic tile."""
    folder = DATA / "tgs-salt"
    if folder.is_dir():
        with open(folder / "train.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        best = max(rows, key=lambda r: sum(int(v) for v in r["rle_mask"].split()[1::2]) if r["rle_mask"] else 0)
        partial = [r for r in rows if r["rle_mask"] and 6000 < sum(int(v) for v in r["rle_mask"].split()[1::2]) < 9000]
        chosen = (partial or [best])[0]["id"]
        return folder / "train" / "images" / f"{chosen}.png"
    path = tmp_path / "tile.png"
    tile = np.full((101, 101), 20, np.uint8)
    tile[:, :50] = 230    # a flat bright half: salt for the tiny model and, flat, for a TGS-trained one
    path.write_bytes(png_bytes(tile))
    return path


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def _pixels(page, src: str) -> np.ndarray:
    url = src if src.startswith("http") else page.url.split("/", 3)[:3] and "/".join(page.url.split("/", 3)[:3]) + src
    return np.asarray(Image.open(io.BytesIO(page.request.get(url).body())).convert("RGB")).astype(int)


def test_salt_and_rocks_flows_in_chromium(tmp_path, model_dir, rock_folder, whale_folder, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {SHOTS}")
    whales = (model_dir / "whales" / "model.pt").exists()
    server = LiveServer(tmp_path, model_dir, gallery_data=rock_folder, whales_data=whale_folder if whales else None)
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        tile = _salt_tile(tmp_path)
        page.goto(f"{server.url}/salt/")
        page.set_input_files("input[name=image]", str(tile))
        page.click("input[type=submit]")
        page.wait_for_url("**/salt/results**")
        overlay = page.locator("img.overlay").first
        overlay.wait_for()
        assert page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=overlay.element_handle())
        src_overlay = overlay.get_attribute("src")
        src_input = page.locator("img[alt='input image']").first.get_attribute("src")
        assert not np.array_equal(_pixels(page, src_overlay), _pixels(page, src_input))
        assert "Salt coverage" in page.content()
        page.screenshot(path=str(SHOTS / "salt_result.png"), full_page=True)

        # SEG-Y: upload a small survey, read its geometry, segment a crossline, see the overlay
        from .conftest import survey

        volume = tmp_path / "survey.sgy"
        survey(volume)
        page.goto(f"{server.url}/salt/")
        page.set_input_files("input[name=image]", str(volume))
        page.click("input[type=submit]")
        page.wait_for_url("**/salt/segy/**")
        assert "1 .. 150 (150, step 1)" in page.content()
        page.select_option("select[name=kind]", "crossline")
        page.fill("input[name=number]", "42")
        page.click("input[type=submit]")
        page.wait_for_url("**/salt/result/**")
        assert "SEG-Y crossline:42" in page.content()
        overlay = page.locator("img.overlay").first
        assert page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=overlay.element_handle())
        page.screenshot(path=str(SHOTS / "segy_result.png"), full_page=True)

        page.goto(f"{server.url}/history")
        assert tile.name in page.content()
        page.screenshot(path=str(SHOTS / "history.png"), full_page=True)

        page.goto(f"{server.url}/rocks/")
        page.set_input_files("input[name=image]", str(rock_folder / "marble" / "marble.001.jpg"))
        page.fill("input[name=k]", "8")
        page.click("input[type=submit]")
        page.wait_for_selector(".bar-row")
        assert page.locator(".bar-row").count() == 6
        grid = page.locator("ul.grid img")
        assert grid.count() == 8
        assert page.wait_for_function(
            "() => [...document.querySelectorAll('ul.grid img')].every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(SHOTS / "rocks_result.png"), full_page=True)

        if whales:
            page.goto(f"{server.url}/whales/")
            page.set_input_files("input[name=image]", str(whale_folder / "images" / "w01e1p0.jpg"))
            page.click("input[type=submit]")
            page.wait_for_selector("ol.candidates")
            assert page.locator("ol.candidates > li").count() == 5
            assert "Duplicate of gallery photo" in page.content()
            assert page.locator("img.match").count() >= 1   # query beside the candidate, matches drawn
            page.click("details.shortlist summary")
            assert page.locator("details.shortlist tbody tr").count() >= 5
            assert page.wait_for_function(
                "() => [...document.querySelectorAll('article.whale img')].every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(SHOTS / "whales_result.png"), full_page=True)

        assert not errors, errors      # no console errors so far (CSP violations included)
        page.goto(f"{server.url}/salt/")
        bad = tmp_path / "notes.png"
        bad.write_text("not an image")
        page.set_input_files("input[name=image]", str(bad))
        page.click("input[type=submit]")
        assert "not a readable image" in page.locator(".errors").inner_text()
        page.screenshot(path=str(SHOTS / "salt_error.png"), full_page=True)
        assert errors == ["Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"]
    finally:
        server.stop()


def test_a_large_section_runs_as_a_job_with_a_progress_bar_and_the_api_docs_load(tmp_path, model_dir, browser):
    """A 300x400 section (20 tiles) is above SYNC_MAX_TILES=4: the form leads to the job page, whose
    progress bar refreshes itself (no script) until the result page; /api/docs runs Swagger UI
    from local assets under its CSP."""
    section = tmp_path / "section.png"
    section.write_bytes(png_bytes(np.tile(np.linspace(20, 230, 400, dtype=np.uint8), (300, 1))))
    server = LiveServer(tmp_path, model_dir, env={"SYNC_MAX_TILES": "4"})
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{server.url}/salt/")
        page.set_input_files("input[name=image]", str(section))
        page.click("input[type=submit]")
        page.wait_for_url("**/salt/**")
        if "/salt/jobs/" in page.url:            # the job may already be done when the page loads
            assert page.locator("progress.job-progress").count() == 1
            page.screenshot(path=str(SHOTS / "salt_job.png"), full_page=True)
        page.wait_for_url("**/salt/result/**", timeout=120_000)
        assert "section.png" in page.content() and "Salt coverage" in page.content()
        page.goto(f"{server.url}/api/docs")
        page.wait_for_selector(".opblock-summary", timeout=30_000)
        assert page.locator(".opblock-summary-path", has_text="/api/v1/salt/segment").count() >= 1
        page.screenshot(path=str(SHOTS / "api_docs.png"), full_page=True)
        assert not errors, errors
    finally:
        server.stop()


#: Records every text the upload progress shows in sessionStorage (it survives the redirect).
SEEN_STATUS = """new MutationObserver(() => {
  const s = document.querySelector('.upload-status');
  if (s && s.textContent) sessionStorage.setItem('seen', (sessionStorage.getItem('seen') || '') + '|' + s.textContent);
}).observe(document, {subtree: true, childList: true, characterData: true});"""


@pytest.mark.skipif(not (DATA / "seismic-real").is_dir(), reason="../shared/data/seismic-real is absent")
def test_a_section_figure_shows_its_data_area_and_confidence(tmp_path, model_dir, browser):
    """A matplotlib figure of the Volve 2-D line (title, labels, colour bar, white margins) uploaded
    through the page: a progress bar with an estimate shows while it works, the page names the data
    area found and the confidence, and the overlay hatches the margins (no data) instead of painting them."""
    from .section_figures import read_section, render_figure

    rendered = render_figure(read_section(DATA / "seismic-real" / "volve10r12-full-twt-arb.sgy"), size=(6, 4))
    figure = tmp_path / "figure.png"
    figure.write_bytes(rendered.data)
    server = LiveServer(tmp_path, model_dir)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.add_init_script(SEEN_STATUS)
        page.goto(f"{server.url}/salt/")
        page.set_input_files("input[name=image]", str(figure))
        page.click("input[type=submit]")
        page.wait_for_url("**/salt/result**", timeout=120_000)
        seen = page.evaluate("sessionStorage.getItem('seen') || ''")
        assert "Working: 0 s of about" in seen, seen        # the bar and its estimate while the server worked
        text = page.locator("article.result").first.inner_text()
        assert "Data area (found automatically)" in text and "Confidence:" in text
        overlay = page.locator("img.overlay").first
        assert page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=overlay.element_handle())
        pixels = _pixels(page, overlay.get_attribute("src"))
        top, bottom, left, right = rendered.box
        margin = pixels[:max(1, top - 8)]                  # the title band above the plot
        assert set(np.unique(margin)) <= {96, 176}          # hatched no data, never salt red
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280                                # the figures fit the page
        page.screenshot(path=str(SHOTS / "salt_figure.png"), full_page=True)
    finally:
        server.stop()
