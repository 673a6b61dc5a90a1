"""The web UI driven in headless Chromium (Playwright with the system Chromium at /usr/bin/chromium).

Upload the astronaut photo, wait for the verdict, read it, and screenshot the page. With ``DFLAB_UPDATE_DOCS=1``
the screenshot is also written to docs/web_ui.png (that is how the committed one was made, with the shipped
default detector when it exists).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("DFLAB_CHROMIUM", "/usr/bin/chromium"))
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path, tiny_scorers):
    import uvicorn

    from dflab.scan.pipeline import DEFAULT_WEIGHTS
    from dflab.serve.app import ServeConfig, create_app

    scorers = None if DEFAULT_WEIGHTS.exists() else tiny_scorers
    app = create_app(ServeConfig(data_dir=tmp_path / "srv", max_frames=8), scorers=scorers)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    end = time.time() + 30
    while not srv.started and time.time() < end:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_upload_wait_read_verdict_screenshot(server, corpus, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(server)
            page.set_input_files("#file", str(corpus["astronaut.png"]))
            page.click("#submit")
            page.wait_for_selector("#result:not([hidden])", timeout=90_000)
            verdict = page.inner_text("#verdict")
            assert verdict in ("fake", "real", "uncertain"), verdict
            assert "P(fake)" in page.inner_text("#score-line")
            page.wait_for_function("document.querySelectorAll('#overlays img').length > 0")
            page.wait_for_function("[...document.querySelectorAll('#overlays img')].every(i => i.complete)")
            shot = tmp_path / "web_ui.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("DFLAB_UPDATE_DOCS") == "1":
        shutil.copy(shot, REPO / "docs" / "web_ui.png")
