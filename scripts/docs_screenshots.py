"""Regenerate docs/scan_report.png (the ``dflab demo`` report) and docs/web_ui.png (the web UI showing a video's
result after a photo and a video were dropped at once; taken by tests/serve/test_serve_browser.py).

    python scripts/docs_screenshots.py

Uses the shipped default detector and the system Chromium (/usr/bin/chromium) through Playwright; offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("DFLAB_CHROMIUM", "/usr/bin/chromium")


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        subprocess.run([sys.executable, "-m", "dflab.cli", "demo", "--out", str(out)], check=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.goto((out / "report.html").as_uri())
            page.screenshot(path=str(REPO / "docs" / "scan_report.png"), full_page=True)
            browser.close()
    env = {**os.environ, "DFLAB_UPDATE_DOCS": "1"}
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "tests/serve/test_serve_browser.py"], check=True, cwd=REPO, env=env
    )
    print("wrote docs/scan_report.png and docs/web_ui.png")


if __name__ == "__main__":
    main()
