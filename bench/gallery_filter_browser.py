"""Chromium timing of the Gallery's "right answer, looked elsewhere" filter on the shortcut demo.

    PYTHONPATH=$PWD python bench/gallery_filter_browser.py

Starts the app (tests/_browser.py), opens the shortcut demo (44 images), then switches the filter
to "Right answer, looked elsewhere" and back to "All images" twice. For each switch it polls the
page every 30 ms and prints when the tile count changed: (seconds after the click, tiles). The
last change is when the final grid is on screen. Needs Debian's chromium.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

TILES = "[class*='st-key-gopen_']"
SWITCHES = ["Right answer, looked elsewhere", "All images"] * 2


def main() -> None:
    from playwright.sync_api import sync_playwright

    from tests._browser import streamlit_app

    with streamlit_app(Path(tempfile.mkdtemp())) as url, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 3000})
        page.goto(f"{url}/gallery")
        page.get_by_role("button", name="Open the shortcut demo").click()
        page.get_by_text("Predicted correctly").wait_for(timeout=600_000)
        while page.locator(TILES).count() != 44:
            time.sleep(0.5)
        time.sleep(3)
        print(f"load average {os.getloadavg()[0]:.1f}")
        for label in SWITCHES:
            target = (
                page.get_by_text(label, exact=True).last if label == "All images" else page.get_by_text(label)
            )
            started, changes, last = time.perf_counter(), [], None
            target.click()
            while time.perf_counter() - started < 4:
                n = page.locator(TILES).count()
                if n != last:
                    changes.append((round(time.perf_counter() - started, 2), n))
                    last = n
                time.sleep(0.03)
            print(f"{label}: {changes}")
        browser.close()


if __name__ == "__main__":
    main()
