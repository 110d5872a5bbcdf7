"""The real app under `streamlit run`, and Debian's Chromium driven by Playwright: what the
browser tests (tests/app/test_browser.py, test_gallery_browser.py) share."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# settings that work in a container without a GPU or network
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# settings of the developer's shell that would point the app elsewhere
FOREIGN_ENV = ("DATABASE_URL", "SALIENCY_GALLERY_DB", "SALIENCY_RAY_ADDRESS", "SALIENCY_REVIEW_DIR")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_app(data: Path, port: int | None = None, **env: str) -> Iterator[str]:
    """``streamlit run app.py`` on ``port`` (default: a free one) with its databases in ``data``;
    yields its URL. The server writes its log to ``data/streamlit.log`` (a file, not a pipe nobody
    reads: a long run never blocks on a full pipe) and is stopped on exit."""
    port = port or free_port()
    environment = dict(
        os.environ,
        STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
        PYTHONPATH=ROOT,
        SALIENCY_DB=str(data / "reviews.sqlite"),
        **{"SALIENCY_DEMO_QUALIFICATION": "0", **env},  # no background qualification unless asked
    )
    for name in FOREIGN_ENV:
        if name not in env:
            environment.pop(name, None)
    log_path = data / "streamlit.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
            ],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                        break
                except OSError:
                    time.sleep(0.5)
            else:
                pytest.fail("streamlit did not start: " + log_path.read_text(errors="replace")[-2000:])
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def launch(playwright):
    """Debian's Chromium, headless."""
    assert os.path.exists(CHROMIUM), "Debian's chromium is needed: apt-get install -y chromium"
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
