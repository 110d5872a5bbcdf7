import pytest
from streamlit.runtime.pages_manager import PagesManager


@pytest.fixture(autouse=True)
def app_py_on_every_run(monkeypatch):
    """AppTest resets ``PagesManager.uses_pages_directory`` before each run; because pages/ exists,
    every run would start in Streamlit's legacy pages mode, where pages/_common.require_frame()
    restarts the run (dropping button clicks). A real server leaves that mode for good once
    app.py has called st.navigation: do the same here."""
    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
