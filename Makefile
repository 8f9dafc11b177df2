# Two set-up commands (see README): `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_INSTALL := $(PIP) install --quiet -c constraints.txt

.PHONY: demo test test-all lint bench bench-report models browser clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e .
	touch $@

# dev extras + dm + bench: the benchmark smoke tests compare our scores against segmentation_models_pytorch.
$(VENV)/.installed-dev: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e ".[dev,dm,bench]"
	touch $(VENV)/.installed $@

# Debian's Chromium for the real-browser tests (Playwright never downloads its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian chromium for the browser tests..."; \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq chromium >/dev/null); \
	  else (sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null); fi; }

# The main job on the embedded samples and default models (results in runs/demo), then the web app.
APP_PORT ?= 8501
demo: $(VENV)/.installed
	$(PY) -m microcnn demo --out runs/demo
	@echo "Starting the app on http://localhost:$(APP_PORT)  (Ctrl-C stops it)"
	$(PY) -m streamlit run app/streamlit_app.py --server.port $(APP_PORT) --server.headless true \
	  --browser.gatherUsageStats false

test: $(VENV)/.installed-dev browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow" -p no:cacheprovider --durations=30

test-all: $(VENV)/.installed-dev browser
	$(PY) -m pytest -p no:cacheprovider

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.installed-dev
	$(PY) -m benchmarks.run

# docs/benchmarks.md from the raw results kept in benchmarks/results/ (file names sort in run order).
bench-report: $(VENV)/.installed-dev
	$(PY) -m benchmarks.run --from-results $(sort $(wildcard benchmarks/results/*.json))

# Default models in data/models (configs/models/): retrained from scratch (seeded) and re-exported with their
# cards. The NASA model needs ../shared/data/nasa_super and is skipped with a message where it is absent.
DEFAULT_MODELS := phase_segmenter morphology_classifier property_regressor
NASA_DATA := ../shared/data/nasa_super

models: $(VENV)/.installed
	@for m in $(DEFAULT_MODELS) $$([ -d $(NASA_DATA) ] && echo nasa_gamma_prime); do \
	  echo "== $$m"; rm -rf runs/models/$$m; \
	  OMP_WAIT_POLICY=PASSIVE $(PY) -m microcnn train configs/models/$$m.yaml --run-dir runs/models/$$m \
	  && $(PY) -m microcnn export runs/models/$$m --name $$m --card configs/models/$$m.card.yaml --force \
	  || exit 1; \
	done
	@[ -d $(NASA_DATA) ] || echo "Skipped nasa_gamma_prime: $(NASA_DATA) not found (the NASA Super benchmark, \
	see data/models/README.md); data/models/nasa_gamma_prime.* were left as they are."
	@du -sh data/models

clean:
	rm -rf $(VENV) build *.egg-info runs .pytest_cache
