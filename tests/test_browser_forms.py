"""Every form of every page submitted in Chromium with JavaScript on, as anonymous, user and admin,
with sign-in required; and no page scrolls sideways at a laptop (1366x900) or a phone (390x844) width."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from bench.server import LiveServer

from .conftest import DATA, png_bytes, survey
from .test_browser import CHROMIUM, SHOTS, _salt_tile, browser  # noqa: F401 (the browser fixture)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM), reason="Debian chromium not installed")]
PASSWORD = "a long password"


def _user(server: LiveServer, name: str, *flags: str) -> None:
    done = subprocess.run([*server.flask, "users", "create", name, *flags], input=f"{PASSWORD}\n{PASSWORD}\n",
                          env=server.env, cwd=str(__import__("bench.server", fromlist=["ROOT"]).ROOT),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _users_list(server: LiveServer) -> str:
    from bench.server import ROOT

    return subprocess.run([*server.flask, "users", "list"], env=server.env, cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def _sign_in(page, server: LiveServer, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{server.url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("[type=submit]:visible >> nth=-1")
    page.wait_for_load_state()


def _no_sideways_scroll(page, what: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size["width"]
    assert width <= viewport, f"{what} is {width} px wide at a {viewport} px window"


def test_every_form_works_with_javascript_on(tmp_path, model_dir, whale_folder, browser):  # noqa: F811
    whales = (model_dir / "whales" / "model.pt").exists()
    server = LiveServer(tmp_path, model_dir, whales_data=whale_folder if whales else None,
                        env={"AUTH_REQUIRED": "1"})
    try:
        _user(server, "boss", "--admin")
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        # anonymous: every page leads to the sign-in form; a wrong password is said so
        for path in ("/", "/salt/", "/rocks/", "/whales/", "/history", "/account", "/admin/users"):
            page.goto(f"{server.url}{path}")
            assert "/login" in page.url, path
        assert page.locator(".upload-progress:visible").count() == 0     # no empty bar under the sign-in form
        _sign_in(page, server, "boss", "wrong password")
        assert "/login" in page.url and "wrong" in page.content().lower()

        # admin: create a user (a short password is refused with its reason, then a good one works)
        _sign_in(page, server, "boss")
        page.goto(f"{server.url}/admin/users")
        page.fill("input[name=user-name]", "alice")
        page.fill("input[name=user-password]", "short")
        page.fill("input[name=user-confirm]", "short")
        page.click("input[name=user-submit]")
        page.wait_for_load_state()
        assert "8 characters or more" in page.content()
        assert "alice" not in _users_list(server)
        page.fill("input[name=user-name]", "alice")
        page.fill("input[name=user-password]", PASSWORD)
        page.fill("input[name=user-confirm]", PASSWORD)
        page.click("input[name=user-submit]")
        page.wait_for_selector("text=user alice created")
        assert "alice" in _users_list(server)
        # a key for alice from the admin page, then deactivate and activate her
        card = page.locator("section.user", has_text="alice")
        card.locator("input[name=key-label]").fill("from-admin")
        card.locator("button[name=key-submit]").click()
        page.wait_for_selector(".flash.key")
        assert "from-admin" in page.locator("section.user", has_text="alice").inner_text()
        page.locator("section.user", has_text="alice").locator("button[name=active-submit]").click()
        page.wait_for_selector("text=alice deactivated")
        page.locator("section.user", has_text="alice").locator("button[name=active-submit]").click()
        page.wait_for_selector("text=alice activated")
        page.screenshot(path=str(SHOTS / "admin_users.png"), full_page=True)

        if whales:   # the researcher's main action: confirm a candidate, or enrol a new individual
            for button, expect in (("confirm", "confirmed as"), ("new", "enrolled as the new individual")):
                page.goto(f"{server.url}/whales/")
                page.set_input_files("input[name=image]", str(whale_folder / "images" / "w01e1p0.jpg"))
                page.click("input[type=submit]")
                page.wait_for_selector("ol.candidates")
                page.click("details.decide summary")
                page.fill("details.decide input[name=decided_by]", "boss")
                page.click(f"details.decide input[name={button}]")
                page.wait_for_selector(f"text={expect}")
            page.goto(f"{server.url}/whales/enrol")
            page.fill("input[name=whale_id]", "whale-enrolled")
            page.set_input_files("input[name=image]", str(whale_folder / "images" / "w02e0p0.jpg"))
            page.click("input[type=submit]")
            page.wait_for_selector("text=enrolled 1 photo(s) of whale-enrolled")

        page.click("button:has-text('Sign out')")
        page.wait_for_url("**/login**")

        # a user: a key of their own, shown once, then revoked
        _sign_in(page, server, "alice")
        page.goto(f"{server.url}/account")
        page.fill("input[name=key-label]", "notebook")
        page.click("input[name=key-submit]")
        page.wait_for_selector(".flash.key")
        assert "notebook" in page.locator("table.keys").inner_text()
        page.locator("table.keys tr", has_text="notebook").locator("[type=submit]").click()
        page.wait_for_selector("text=revoked")
        page.goto(f"{server.url}/admin/users")
        assert page.locator("text=Forbidden").count() + page.locator("text=403").count() >= 1
        assert not errors, errors
    finally:
        server.stop()


def test_no_page_scrolls_sideways(tmp_path, model_dir, whale_folder, browser):  # noqa: F811
    whales = (model_dir / "whales" / "model.pt").exists()
    server = LiveServer(tmp_path, model_dir, whales_data=whale_folder if whales else None)
    section = tmp_path / "wide-section.png"
    rng = np.random.default_rng(0)
    section.write_bytes(png_bytes((rng.normal(128, 30, (300, 2600)).clip(0, 255)).astype(np.uint8)))
    volume = tmp_path / "survey.sgy"
    survey(volume)
    try:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        pages: list[tuple[str, str]] = []
        for name, upload in (("tile", _salt_tile(tmp_path)), ("section", section)):
            page.goto(f"{server.url}/salt/")
            page.set_input_files("input[name=image]", str(upload))
            page.click("input[type=submit]")
            page.wait_for_url("**/salt/result**", timeout=180_000)
            pages.append((name, page.url))
        page.goto(f"{server.url}/salt/")
        page.set_input_files("input[name=image]", str(volume))
        page.click("input[type=submit]")
        page.wait_for_url("**/salt/segy/**")
        pages.append(("segy geometry", page.url))
        page.click("input[type=submit]")
        page.wait_for_url("**/salt/result/**")
        pages.append(("segy slice", page.url))
        if whales:
            page.goto(f"{server.url}/whales/")
            page.set_input_files("input[name=image]", str(whale_folder / "images" / "w01e1p0.jpg"))
            page.click("input[type=submit]")
            page.wait_for_selector("ol.candidates")
            _no_sideways_scroll(page, "whale match")
        pages += [("models", f"{server.url}/models"), ("history", f"{server.url}/history"),
                  ("api docs", f"{server.url}/api/docs")]
        for width, height in ((1366, 900), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            for name, url in pages:
                page.goto(url)
                page.wait_for_load_state("networkidle")
                _no_sideways_scroll(page, name)
                page.screenshot(path=str(SHOTS / f"fit_{name.replace(' ', '_')}_{width}.png"), full_page=True)
    finally:
        server.stop()


@pytest.mark.skipif(not (DATA / "seismic-real").is_dir(), reason="../shared/data/seismic-real is absent")
def test_salt_form_says_the_models_threshold(tmp_path, model_dir, browser):  # noqa: F811
    """The threshold field's placeholder is the checkpoint's own default (what a blank field gives)."""
    import json

    server = LiveServer(tmp_path, model_dir)
    try:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(f"{server.url}/salt/")
        default = json.loads((model_dir / "salt" / "meta.json").read_text()).get("threshold", 0.5)
        assert page.get_attribute("input[name=threshold]", "placeholder") == f"{default:g}"
    finally:
        server.stop()
