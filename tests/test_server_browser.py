"""The studio in real headless Chromium: upload two images, paint, watch, cancel, download.

Drives Debian's ``chromium`` with Playwright for Python (``.ci/run`` installs both; Playwright's
own browser download is never used). Skipped, saying why, only where there is no Chromium.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest

from painterly.server import StudioServer, create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
    executable = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if executable is None:
        pytest.skip(f"no Chromium at {CHROMIUM} or on PATH: install Debian's package (apt-get install chromium) to run this test")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_upload_two_images_paint_cancel_and_download(browser, scene_path: Path, stripes_path: Path) -> None:
    app = create_app(device="cpu", weights="random", allowed_hosts=["127.0.0.1"])
    with StudioServer(app) as server:
        page = browser.new_page()
        requests: list[str] = []
        problems: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(server.url)
        page.wait_for_selector(".example")  # /api/info answered, examples drawn

        page.set_input_files("#content-file", scene_path)
        page.set_input_files("#style-file", stripes_path)
        assert page.locator("#styles .chip").count() == 1
        page.fill("#size", "40")
        page.fill("#iterations", "4")
        page.click("#run")
        page.wait_for_selector("#download:not([hidden])", timeout=60_000)
        assert page.text_content("#status").startswith("Done in")
        result = page.locator("#result")
        assert result.get_attribute("src").endswith("/result")
        # The link shows as soon as the job is done; the image may still be loading.
        deadline = time.monotonic() + 30
        while page.evaluate("document.getElementById('result').naturalWidth") == 0 and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert page.evaluate("document.getElementById('result').naturalWidth") == 40
        assert page.is_visible("#losses")  # the loss curve of the four iterations
        download_url = page.get_attribute("#download", "href")
        with page.expect_download() as download:
            page.click("#download")
        assert download.value.suggested_filename == "scene_stripes.png"

        # A long run: its progress shows, the preview refreshes, and Cancel stops it.
        page.fill("#iterations", "1000")
        page.click("#run")
        # (Selectors, not wait_for_function: the page's CSP rightly forbids eval.)
        page.wait_for_selector("#status:text-matches('^Iteration [0-9]+ of 1000')", timeout=60_000)
        page.wait_for_selector("#result[src*='/preview?i=']", timeout=60_000)
        page.click("#cancel")
        page.wait_for_selector("#status:text-matches('^Cancelled after')", timeout=60_000)
        assert page.is_enabled("#run")

        # The fast method offline (the bundled decoder), with its own fields: WCT chosen is what is sent.
        assert not page.is_visible("#transform-row")
        page.check("input[name=method][value=stylize]")
        assert page.is_visible("#transform-row") and not page.is_visible("#iterations-row")
        page.select_option("#feature_transform", "wct")
        with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as posted:
            page.click("#run")
        assert posted.value.json()["settings"]["feature_transform"] == "wct"
        page.wait_for_selector("#status:text-matches('^Done in')", timeout=60_000)
        page.close()

    assert download_url.endswith("/result")
    assert problems == []
    assert requests and all(url.startswith((server.url, "blob:", "data:")) for url in requests), "the page reached beyond the studio"
