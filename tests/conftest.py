"""Shared fixtures: the demo model, two scikit-image photos, and a log of measured errors."""

from __future__ import annotations

import os
import tempfile

import pytest
import skimage
import torch

# the one-node Ray cluster of the Ray tests
from _ray_cluster import cluster, one_thread  # noqa: F401
from streamlit.runtime.pages_manager import PagesManager

import saliency_core as sc

# Small models and single images: one thread is about as fast, and unlike two OpenMP threads
# spinning for each other it does not slow down ~10x when another process shares the CPU.
# Set OMP_NUM_THREADS to choose otherwise.
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)

# execution plans (saliency_core/engine/plans.py): cached on disk, the tests' out of the user's cache;
# float32 only (maps as the tests state them, no timing runs) except in tests/engine/test_plans.py
os.environ.setdefault("SALIENCY_CACHE_DIR", tempfile.mkdtemp(prefix="saliency-tests-cache-"))
os.environ.setdefault("SALIENCY_PLANS", "float32")
# the review database (and the gallery store beside it), accounts and roles of a test run: its own,
# never the developer's ./data (a demo qualification recorded there would be in force in the tests)
_DATA = tempfile.mkdtemp(prefix="saliency-tests-data-")
for _name, _file in (
    ("SALIENCY_DB", "reviews.sqlite"),
    ("SALIENCY_USERS", "users.toml"),
    ("SALIENCY_ROLES", "roles.toml"),
):
    os.environ.setdefault(_name, os.path.join(_DATA, _file))

# (test, comparison, value) rows; printed in the terminal summary (see pytest_terminal_summary)
MEASURED: list[tuple[str, str, float]] = []


def _photo(name: str) -> str:
    return os.path.join(os.path.dirname(skimage.__file__), "data", name)


@pytest.fixture(scope="session")
def chelsea_path() -> str:
    """A tabby cat (ImageNet classes 281-285 are cats)."""
    return _photo("chelsea.png")


@pytest.fixture(scope="session")
def coffee_path() -> str:
    """A cup of espresso (ImageNet class 967)."""
    return _photo("coffee.png")


@pytest.fixture(scope="module")
def demo():
    """The built-in demo Classifier. Tests must not modify it (test_state checks methods don't)."""
    return sc.load_model("demo")


@pytest.fixture(scope="module")
def chelsea_x(demo, chelsea_path) -> torch.Tensor:
    return demo.preprocess(chelsea_path)


@pytest.fixture(scope="module")
def coffee_x(demo, coffee_path) -> torch.Tensor:
    return demo.preprocess(coffee_path)


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """||ours - reference|| / ||reference|| in float64."""
    ours, reference = torch.as_tensor(ours).detach().double(), torch.as_tensor(reference).detach().double()
    assert ours.shape == reference.shape, f"shape {tuple(ours.shape)} vs reference {tuple(reference.shape)}"
    norm = reference.norm()
    assert norm > 0, "reference is all zeros: the comparison would prove nothing"
    return float((ours - reference).norm() / norm)


@pytest.fixture
def record(request):
    """record(comparison, value): keep a measured number for the terminal summary."""

    def add(comparison: str, value: float) -> float:
        MEASURED.append((request.node.name, comparison, float(value)))
        return value

    return add


def pytest_terminal_summary(terminalreporter):
    if not MEASURED:
        return
    terminalreporter.section("measured errors")
    for test, comparison, value in MEASURED:
        terminalreporter.write_line(f"{value:10.3e}  {comparison}  [{test}]")


@pytest.fixture(autouse=True)
def app_py_on_every_run(monkeypatch):
    """AppTest resets ``PagesManager.uses_pages_directory`` before each run; because pages/ exists,
    every run would start in Streamlit's legacy pages mode, where pages/_frame.require_frame()
    restarts the run (dropping button clicks). A real server leaves that mode for good once
    app.py has called st.navigation: do the same here."""
    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
    monkeypatch.setenv("SALIENCY_DEMO_QUALIFICATION", "0")  # no background qualification in tests


def open_page(page: str, methods: list[str]):
    """Run app.py, switch to ``page`` and set the sidebar's methods (AppTest does not list the
    sidebar's widgets after a page switch). Call ``rerun_page`` after changing widgets."""
    from streamlit.testing.v1 import AppTest

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    at = AppTest.from_file(os.path.join(root, "app.py"), default_timeout=300).run()
    at.switch_page(page)
    return rerun_page(at, methods)


def rerun_page(at, methods: list[str]):
    at.session_state["methods"] = methods
    return at.run()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """A fresh review database, once in SQLite and once in PostgreSQL (tests/_postgres.py)."""
    import _postgres

    return _postgres.review_url(request.param, tmp_path)


def models_app(monkeypatch, models_dir):
    """The app with ``models_dir`` as its models folder; the first run (demo model) computes no map."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SALIENCY_MODELS_DIR", str(models_dir))
    at = AppTest.from_file(
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app.py"),
        default_timeout=300,
    )
    at.session_state["methods"] = []
    at = at.run()
    assert not at.exception, at.exception
    return at


def select_model(at, path):
    """Pick the model ``path`` in the sidebar's model list."""
    at.sidebar.selectbox(key="model_choice").set_value(str(path))
    return at.run()


def shown(text: str) -> str:
    """What a reader sees of Markdown source: pages escape user text (file names, labels,
    messages) with backslashes, which the Markdown renderer removes."""
    import re

    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def image_alts(at) -> list[tuple[str, str | None]]:
    """(caption, alt text or None) of every image an AppTest run drew."""
    return [
        (img.caption, img.alt if img.HasField("alt") else None)
        for el in at.get("image")
        for img in el.proto.imgs
    ]
