"""The shortcut demo in a real browser (the app under `streamlit run`, Debian's Chromium via
Playwright): the demo set with watermarked tripods on demo-watermark, the "right answer, looked
elsewhere" filter, the two-by-two count, and the flagged shortcut group of "tripod" shown in the
grid. Screenshots and filter timings go to tests/artifacts/."""

import os
import time

import pytest
from _browser import ROOT, launch, streamlit_app

ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
IMAGES = 44  # the demo set's 32 and 12 extra tripods
MARKED = 7  # tripods with the watermark


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("gallery_shortcuts")
    with streamlit_app(data, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")) as url:
        yield url


def _tiles(page):
    return page.locator("[class*='st-key-gopen_']")


def _settled(page, timeout: float = 120) -> None:
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=timeout * 1000)


def _no_errors(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("[data-testid='stAlertContentError']").count() == 0


SHOWN: dict[str, float] = {}  # action -> seconds until its grid was first seen complete


def _count_after(
    page, action, expected=None, timeout: float = 60, name: str = "", before: int | None = None
) -> tuple[int, float]:
    """Do ``action``; wait until the grid settles (the tile count stops changing, and is ``expected``
    or, when given, differs from ``before``); (tiles, seconds). The time the final grid was first on
    screen (no run in progress) goes to ``SHOWN[name]``."""
    started = time.perf_counter()
    action()
    deadline = time.time() + timeout
    last, stable, first = -1, 0, None
    while time.time() < deadline:
        n = _tiles(page).count()
        done = page.get_by_text("Running...").count() == 0 and n != before
        if done and (expected is None or n == expected):
            first = first if first is not None and n == last else time.perf_counter() - started
        if done and n == last and (expected is None or n == expected):
            stable += 1
            if stable >= 2:
                SHOWN[name] = first
                return n, time.perf_counter() - started
        else:
            stable = 0
        last = n
        time.sleep(0.05)
    page.screenshot(path=os.path.join(ARTIFACTS, "gallery_shortcuts_failed.png"), full_page=True)
    raise AssertionError(f"the grid did not settle ({_tiles(page).count()} tiles, expected {expected})")


def test_shortcut_demo_filters_and_group(server):
    from playwright.sync_api import sync_playwright

    os.makedirs(ARTIFACTS, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1600, "height": 3000})
        page.goto(f"{server}/gallery")
        page.get_by_role("button", name="Open the shortcut demo").click()
        page.get_by_text("Predicted correctly").wait_for(timeout=600_000)
        deadline = time.time() + 600
        while _tiles(page).count() != IMAGES and time.time() < deadline:
            time.sleep(0.5)
        _settled(page, 300)
        _no_errors(page)
        assert page.get_by_text("How the set's 7 labels map to the model's classes").count() == 1
        assert page.get_by_text("Right answer, right reason?").count() >= 1  # the 2x2 count

        n, to_filter = _count_after(
            page,
            lambda: page.get_by_text("Right answer, looked elsewhere").click(),
            name="filter",
            before=IMAGES,
        )
        assert n >= MARKED
        _no_errors(page)
        page.screenshot(
            path=os.path.join(ARTIFACTS, "gallery_right_answer_looked_elsewhere.png"), full_page=True
        )
        captions = " ".join(page.locator("[data-testid='stMarkdownContainer']").all_inner_texts())
        assert "inside the part" in captions

        back, to_all = _count_after(
            page, lambda: page.get_by_text("All images", exact=True).last.click(), IMAGES, name="all"
        )

        # shortcut groups of "tripod" (Grad-CAM maps)
        box = page.locator("[class*='st-key-gg_class']")
        box.scroll_into_view_if_needed()
        box.click()
        page.get_by_role("option").filter(has_text="tripod").first.click()
        _settled(page)
        page.locator("[class*='st-key-gg_find'] button").click()
        warning = page.get_by_text("sits in the top-left corner")
        warning.first.wait_for(timeout=120_000)
        _settled(page)
        _no_errors(page)
        warning.first.scroll_into_view_if_needed()
        page.screenshot(path=os.path.join(ARTIFACTS, "gallery_shortcut_group.png"), full_page=True)
        show = page.get_by_role("button", name=f"Show these {MARKED} in the grid")
        n, to_group = _count_after(page, lambda: show.click(), MARKED, name="group")
        assert page.get_by_role("button", name=f"Send these {MARKED} to review").count() == 1
        page.screenshot(path=os.path.join(ARTIFACTS, "gallery_shortcut_group_grid.png"), full_page=True)
        browser.close()
    with open(os.path.join(ARTIFACTS, "gallery_shortcuts_timing.txt"), "w") as f:
        f.write(
            f"filter 'right answer, looked elsewhere': {to_filter:.2f} s; back to all: {to_all:.2f} s; "
            f"show a shortcut group in the grid: {to_group:.2f} s (each until the grid settled; shared CPU)\n"
            f"first seen complete: filter {SHOWN['filter']:.2f} s, back to all {SHOWN['all']:.2f} s, "
            f"group {SHOWN['group']:.2f} s; load average {os.getloadavg()[0]:.1f}\n"
        )
