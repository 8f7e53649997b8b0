"""The app in a real browser: headless Chromium (Debian's package) driven by Playwright uploads a photo of five
people, runs Inspect, sees the skeleton and the weight maps, picks another person, and takes a screenshot; a broken
upload shows its message once. The README's docs/app.png is regenerated
with `WORKBENCH_SCREENSHOT=docs/app.png python -m pytest tests/test_browser.py` (by default the screenshot goes to a
temporary folder, so the tests leave the repository as they found it).

Skips where Chromium is missing, but fails in CI (env CI set), where `.ci/run` installs it.
"""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import cv2
import pytest
import torch

from workbench.app.callbacks import Workbench
from workbench.app.layout import build_app
from workbench.zoo.cache import ModelCache
from workbench.common.paths import REPO_ROOT
from workbench.detection.yolox import PersonDetector

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT_SETTING = "WORKBENCH_SCREENSHOT"
"""Where the test saves its screenshot (relative to the repository), e.g. docs/app.png; a temporary file if unset."""
DECODED_WIDTH = """selector => {
    const image = document.querySelector(selector);
    return image !== null && image.complete && image.naturalWidth > 200;
}"""
"""True once the image under a selector has finished loading at a real size (a replaced image briefly has width 0)."""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def chromium() -> str:
    if not (Path(CHROMIUM).is_file() and shutil.which(CHROMIUM)):
        message = f"Chromium not found at {CHROMIUM}; install it with `apt-get install -y chromium`"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, detector_path):
    """The app served from a thread of this process on a free local port (one PyTorch thread meanwhile), with the
    shared person detector."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    app = build_app(Workbench(ModelCache(torch.device("cpu")), tmp_path_factory.mktemp("downloads"),
                              detector=PersonDetector(detector_path, threads=1)))
    app.queue(default_concurrency_limit=2)
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_inspect_in_a_browser_finds_the_people_and_shows_the_chosen_one(chromium, app_url, data_root, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    photo = data_root / "coco-sample" / "000000196141.jpg"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1440, "height": 1000})
        try:
            page = browser.new_page()
            page.goto(app_url)
            page.locator("#image-upload input[type=file]").set_input_files(str(photo))
            expect(page.locator("#preview canvas, #preview img").first).to_be_visible(timeout=60_000)
            page.locator("#run-inspect").click()
            expect(page.locator("#skeleton img")).to_be_visible(timeout=120_000)
            expect(page.locator("#weight-maps img")).to_be_visible(timeout=120_000)
            expect(page.locator("#inspect-status")).to_contain_text("found by the person detector")
            page.locator("#person input").click()
            page.get_by_role("option", name="#1 · score", exact=False).first.click()
            expect(page.locator("#inspect-status")).to_contain_text("shown: #1", timeout=120_000)
            for selector in ("#skeleton img", "#weight-maps img"):
                page.wait_for_function(DECODED_WIDTH, arg=selector, timeout=60_000)
                assert page.locator(selector).evaluate("image => image.naturalWidth") > 200
            screenshot = REPO_ROOT / os.environ[SCREENSHOT_SETTING] if os.environ.get(SCREENSHOT_SETTING) else \
                tmp_path / "app.png"
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert cv2.imread(str(screenshot)).shape[1] == 1440


@pytest.mark.slow
def test_a_bad_upload_shows_its_message_once(chromium, app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    broken = tmp_path / "broken.jpg"
    broken.write_text("this is not an image\n")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(app_url)
            page.locator("#image-upload input[type=file]").set_input_files(str(broken))
            toast = page.locator(".toast-body")
            expect(toast).to_contain_text("broken.jpg cannot be decoded", timeout=60_000)
            page.wait_for_timeout(3000)
            assert toast.count() == 1
            assert toast.inner_text().count("cannot be decoded") == 1
            assert page.locator("#run-inspect").bounding_box()["y"] < 900
        finally:
            browser.close()
