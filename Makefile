# make run: set up .venv and start the dashboard on the demo model.
# make test: set up .venv with the test tools and run every test.
# make lint: ruff check and ruff format --check (settings in pyproject.toml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench clean chromium postgresql qualify-demo

$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements-ray.txt $(VENV)/.runtime
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) -m streamlit run app.py

# The demo's qualification ahead of time (the dashboard also computes it in the background at start;
# both keep it in data/qualification and record it in the review database; docs/qualification.md).
qualify-demo: $(VENV)/.runtime
	$(PY) -m saliency_core qualify --demo --out data/qualification/demo

# Debian's chromium for the end-to-end browser test (Playwright cannot download browsers here).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null || $(SUDO) apt-get install -y chromium \
	  || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium)

# Debian's PostgreSQL server binaries: the store tests start a throwaway cluster with them.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || $(SUDO) apt-get install -y postgresql \
	  || ($(SUDO) apt-get update && $(SUDO) apt-get install -y postgresql)

test: $(VENV)/.dev chromium postgresql
	$(PY) -m pytest -q

RUFF ?= $(PY) -m ruff
lint: $(VENV)/.dev
	$(RUFF) check .
	$(RUFF) format --check .

bench: $(VENV)/.dev
	$(PY) bench/run.py

clean:
	rm -rf $(VENV)
