"""The Gallery in a real browser: the app under `streamlit run`, Debian's Chromium via Playwright.
The demo set's grid renders, the "Mistakes only" filter and a click on a confusion-matrix square
change it, and Cancel stops a run with what was finished kept. Screenshots go to tests/artifacts/."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DEMO_ERRORS = 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("gallery")
    port = _free_port()
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", SALIENCY_DB=str(data / "reviews.sqlite"),
               PYTHONPATH=ROOT, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    for name in ("DATABASE_URL", "SALIENCY_GALLERY_DB", "SALIENCY_RAY_ADDRESS"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start: " + proc.stdout.read().decode(errors="replace")[-2000:])
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _tiles(page):
    """One element per tile: the Open button's keyed container."""
    return page.locator("[class*='st-key-gopen_']")


def _wait_tiles(page, count: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _tiles(page).count() == count and page.get_by_text("Running...").count() == 0:
            return
        time.sleep(0.3)
    page.screenshot(path=os.path.join(ARTIFACTS, "gallery_failed.png"), full_page=True)
    raise AssertionError(f"expected {count} tiles, found {_tiles(page).count()}")


def _no_errors(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("[data-testid='stAlertContentError']").count() == 0


def test_grid_renders_and_filters_change_it(server):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian's chromium is needed: apt-get install -y chromium"
    os.makedirs(ARTIFACTS, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1600, "height": 2600})   # the app scrolls inside
        page.goto(f"{server}/gallery")
        page.get_by_role("button", name="Open the demo set").click()
        started = time.perf_counter()
        page.get_by_text("Predicted correctly").wait_for(timeout=300_000)
        _wait_tiles(page, 32, timeout=300)
        waited = time.perf_counter() - started
        _no_errors(page)
        overlays = page.locator("img[alt*='overlay of']")
        overlays.first.wait_for(timeout=60_000)
        deadline = time.time() + 60
        while overlays.count() < 32 and time.time() < deadline:
            time.sleep(0.3)
        assert overlays.count() == 32
        assert "true class cat, the model predicted tiger cat" in overlays.first.get_attribute("alt")
        page.screenshot(path=os.path.join(ARTIFACTS, "gallery_demo.png"), full_page=True)

        # a filter changes the grid
        page.get_by_text("Mistakes only", exact=True).click()
        _wait_tiles(page, DEMO_ERRORS)
        page.get_by_text(f"{DEMO_ERRORS} of 32 images").first.wait_for(timeout=30_000)
        _no_errors(page)
        shot = os.path.join(ARTIFACTS, "gallery_mistakes.png")
        page.screenshot(path=shot, full_page=True)

        # a click on a confusion-matrix square (true motorcycle, predicted motorcycle) shows those images
        chart = page.locator("[data-testid='stPlotlyChart']").first
        points = chart.locator(".scatterlayer .points path.point")
        columns = points.count() // 7                  # 7 true classes (rows), in the order drawn
        index = 4 * columns + 4                        # motorcycle is row 4 and column 4 (alphabetical)
        points.nth(index).click(force=True)
        _wait_tiles(page, 2)
        page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=60_000)
        _no_errors(page)
        page.screenshot(path=os.path.join(ARTIFACTS, "gallery_cell.png"), full_page=True)
        captions = page.locator("[data-testid='stMarkdownContainer']").all_inner_texts()
        assert sum("true: motorcycle · predicted: moped" in c for c in captions) == 2, captions
        assert page.get_by_text("2 of 32 images").count() == 1

        # Cancel stops a run; what was finished stays
        page.get_by_text("Data set and methods").click()
        methods = page.locator("[data-testid='stMain'] [data-testid='stMultiSelect']").filter(has_text="Methods")
        methods.locator("input").click()
        methods.locator("input").fill("Guided backprop")
        # click the listed option itself: Enter under load could pick an option before the list filters
        page.get_by_role("option", name="Guided backprop", exact=True).click(timeout=10_000)
        page.keyboard.press("Escape")
        methods.get_by_text("Guided backprop").wait_for(timeout=10_000)
        page.get_by_role("button", name="Open and compute").click()
        page.get_by_role("button", name="Cancel").wait_for(timeout=60_000)
        time.sleep(3)
        page.get_by_role("button", name="Cancel").click()
        page.get_by_text("Stopped.").wait_for(timeout=60_000)
        page.get_by_role("button", name="Continue computing").wait_for(timeout=10_000)
        stopped = page.get_by_text("Stopped.").inner_text()
        assert "still need computing" in stopped, stopped
        page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=60_000)
        _no_errors(page)
        page.screenshot(path=os.path.join(ARTIFACTS, "gallery_cancelled.png"), full_page=True)
        browser.close()
    with open(os.path.join(ARTIFACTS, "gallery_timing.txt"), "w") as f:
        f.write(f"demo set (32 images, gradient + Grad-CAM) from one click to the grid: {waited:.1f} s\n")
    print(f"one click to the 32-tile grid: {waited:.1f} s; screenshot {shot}")
    assert os.path.getsize(shot) > 10_000
