"""The Gallery in a real browser: the app under `streamlit run`, Debian's Chromium via Playwright.
The demo set's grid renders, the "Mistakes only" filter and a click on a confusion-matrix square
change it, and Cancel stops a run with what was finished kept. Screenshots go to tests/artifacts/."""

import os
import time

import pytest
from _browser import ROOT, launch, streamlit_app

ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
DEMO_ERRORS = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("gallery")  # databases: never in the checkout
    with streamlit_app(data, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")) as url:
        yield url


def _choose(page, select, option: str, tries: int = 4) -> None:
    """Add ``option`` to a multiselect by clicking it in the open list. A rerun that arrives while
    the list is open closes it, so the list is opened again until the option was clicked."""
    from playwright.sync_api import TimeoutError as Timeout

    listed = []
    for _ in range(tries):
        select.locator("input").click()
        select.locator("input").fill(option)
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            page.keyboard.press("Escape")
            return
        except Timeout:
            listed = page.get_by_role("option").all_inner_texts()
            page.keyboard.press("Escape")
            page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=60_000)
    page.screenshot(path=os.path.join(ARTIFACTS, "gallery_choose_failed.png"), full_page=True)
    pytest.fail(f"{option!r} was never listed; the open list showed {listed}")


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

    os.makedirs(ARTIFACTS, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1600, "height": 2600})  # the app scrolls inside
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
        columns = points.count() // 7  # 7 true classes (rows), in the order drawn
        index = 4 * columns + 4  # motorcycle is row 4 and column 4 (alphabetical)
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
        methods = page.locator("[data-testid='stMain'] [data-testid='stMultiSelect']").filter(
            has_text="Methods"
        )
        _choose(page, methods, "Guided backprop")
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
