"""The web UI driven in headless Chromium (Playwright with the system Chromium at /usr/bin/chromium).

Drop a photo and a video at once, watch the first job's progress while the scan is held at a gate, read both
results (verdict, reason, timeline, face tracks, key frames with the heatmap toggle), download the job's reports,
and find the session's jobs again after a reload. With ``DFLAB_UPDATE_DOCS=1`` the screenshot of the video's result
is also written to docs/web_ui.png (that is how the committed one is made, with the shipped default detector).
"""

from __future__ import annotations

import base64
import json
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
def gate():
    """Scans wait at this gate (after reporting 30 % progress) until the test opens it."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture()
def server(tmp_path, tiny_scorers, gate):
    import uvicorn

    from dflab.scan.pipeline import DEFAULT_WEIGHTS, scan_file
    from dflab.serve.app import ServeConfig, create_app

    def gated(path, scorers, opts, *, progress=None, deadline=None):
        progress(0.3, "test gate: waiting")
        gate.wait(120)
        return scan_file(path, scorers, opts, progress=progress, deadline=deadline)

    scorers = None if DEFAULT_WEIGHTS.exists() else tiny_scorers
    app = create_app(ServeConfig(data_dir=tmp_path / "srv", max_frames=8), scorers=scorers, scan_fn=gated)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    end = time.time() + 30
    while not srv.started and time.time() < end:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    gate.set()
    srv.should_exit = True
    thread.join(10)


_DROP = """([files]) => {
  const dt = new DataTransfer();
  for (const [name, b64, type] of files) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    dt.items.add(new File([bytes], name, { type }));
  }
  return dt;
}"""


_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'"


def _with_csp(route) -> None:
    response = route.fetch()
    route.fulfill(response=response, headers={**response.headers, "content-security-policy": _CSP})


def _until(page, js: str, timeout: float = 30) -> None:
    """Poll a JavaScript condition from Python: ``page.wait_for_function`` evaluates strings with ``eval``, which
    the Content-Security-Policy of this test (rightly) forbids."""
    end = time.time() + timeout
    while not page.evaluate(js):
        assert time.time() < end, f"not true after {timeout} s: {js}"
        time.sleep(0.1)


def _row(page, name: str):
    return page.locator("#jobs li", has=page.locator(".name", has_text=name))


def test_drop_two_files_progress_results_downloads(server, corpus, gate, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    from dflab.scan.pipeline import DEFAULT_WEIGHTS

    files = [
        ["astronaut.png", base64.b64encode(corpus["astronaut.png"].read_bytes()).decode(), "image/png"],
        ["clip.mp4", base64.b64encode(corpus["clip.mp4"].read_bytes()).decode(), "video/mp4"],
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900}, accept_downloads=True)
            # the UI must run under a strict Content-Security-Policy: no inline script or style anywhere
            csp_errors: list[str] = []
            page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
            page.route("**/*", _with_csp)
            page.goto(server)
            page.dispatch_event("#drop", "drop", {"dataTransfer": page.evaluate_handle(_DROP, [files])})

            # both files become jobs; the first runs and shows its progress while the scan waits at the gate
            _until(page, "document.querySelectorAll('#jobs li[data-id]:not([data-id=\"\"])').length === 2")
            page.wait_for_selector("#jobs li[data-status=running] progress:not(.idle)", timeout=30_000)
            running = page.locator("#jobs li[data-status=running]")
            assert running.locator("progress").evaluate("p => p.value") == pytest.approx(0.3)
            assert "test gate" in running.locator(".msg").inner_text()
            assert page.locator("#jobs li[data-status=queued]").count() == 1
            gate.set()
            _until(
                page,
                "[...document.querySelectorAll('#jobs li')].every(li => li.dataset.status === 'done')",
                timeout=120,
            )

            # the photo: a verdict, and the reason in words whenever there is no decisive one
            _row(page, "astronaut.png").locator("button.show").click()
            _until(page, "document.getElementById('result-name').textContent === 'astronaut.png'")
            verdict = page.inner_text("#verdict")
            assert verdict in ("fake", "real", "uncertain"), verdict
            assert "P(fake)" in page.inner_text("#score-line")
            if DEFAULT_WEIGHTS.exists():  # the default's card calibrates files: the likelihood ratio in words
                assert "times as likely in a" in page.inner_text("#evidence")
            if verdict == "uncertain":  # the band's words ("lies between ... overlap") or a threshold's margin
                reason = page.inner_text("#reason") if page.is_visible("#reason") else ""
                assert "lies between" in reason or "threshold" in reason, reason

            # the video: timeline, a face track with its own verdict, key frames whose heatmap can be switched off
            _row(page, "clip.mp4").locator("button.show").click()
            _until(page, "document.getElementById('result-name').textContent === 'clip.mp4'")
            page.wait_for_selector("#timeline-box:not([hidden]) #timeline")
            track = page.locator("#tracks .track").first
            assert track.locator("img").count() == 1 and "face 0" in track.inner_text()
            assert track.locator(".badge").inner_text() in ("fake", "real", "uncertain")
            page.wait_for_selector("#keys figure .heat")
            heat = page.locator("#keys figure .heat").first
            assert heat.is_visible()
            page.uncheck("#heat-toggle")
            assert not heat.is_visible()
            page.check("#heat-toggle")
            assert heat.is_visible()
            if DEFAULT_WEIGHTS.exists():  # the shipped card lists what the model has not seen
                page.click("#card summary")
                assert page.locator("#has-not-seen li").count() > 0 and page.is_visible("#has-not-seen li")
            _until(page, "[...document.querySelectorAll('#result img')].every(i => i.complete)")
            shot = tmp_path / "web_ui.png"
            page.screenshot(path=str(shot), full_page=True)

            # downloads: the job's JSON, CSV and HTML reports
            got = {}
            for fmt in ("json", "csv", "html"):
                with page.expect_download() as dl:
                    page.click(f"#dl-{fmt}")
                got[fmt] = Path(dl.value.path()).read_text()
                assert dl.value.suggested_filename == f"clip.mp4.dflab.{fmt}"
            report = json.loads(got["json"])
            assert report["files"][0]["verdict"] == page.inner_text("#verdict")
            assert got["csv"].startswith("path,status,verdict")
            assert "dflab scan report" in got["html"] and "The frames that drove the verdict" in got["html"]

            # the session's jobs survive a reload
            page.reload()
            _until(page, "document.querySelectorAll('#jobs li[data-status=done]').length === 2")
            assert csp_errors == []
            page.unroute_all(behavior="ignoreErrors")
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("DFLAB_UPDATE_DOCS") == "1":
        shutil.copy(shot, REPO / "docs" / "web_ui.png")
