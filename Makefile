# Two set-up commands (see README): `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_INSTALL := $(PIP) install --quiet -c constraints.txt

.PHONY: demo test test-all lint bench models browser clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e ".[dev,dm]"
	touch $(VENV)/.installed $@

# Debian's Chromium for the real-browser tests (Playwright never downloads its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian chromium for the browser tests..."; \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq chromium >/dev/null); \
	  else (sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null); fi; }

demo: $(VENV)/.installed
	$(PY) -m microcnn demo

test: $(VENV)/.installed-dev browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow" -p no:cacheprovider

test-all: $(VENV)/.installed-dev browser
	$(PY) -m pytest -p no:cacheprovider

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.installed-dev
	$(PIP_INSTALL) -e ".[dev,dm,bench]"
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info runs .pytest_cache
