# Two commands do everything on a fresh machine:
#   make app    set up, fetch + convert the default models, start the app on http://localhost:8501
#   make test   set up, fetch the models and the test browser, run lint + the whole test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sra_viz-installed
# The CPU wheel of this pin is on the project's machines; elsewhere the same pin gets the normal build.
TORCH ?= torch==2.13.0
PORT ?= 8501

.PHONY: setup models browser app test lint bench clean-models

$(BIN)/python:
	$(PY) -c 'import sys; assert sys.version_info >= (3, 10), "sra_viz needs Python >= 3.10"'
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml sra_viz/_span_ends.c sra_viz/_span_kd.c | $(BIN)/python  # the C files: compiled loops
	$(BIN)/python -m pip install --disable-pip-version-check -q "$(TORCH)"
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

models: $(STAMP)
	$(BIN)/sra-viz models fetch

browser:
	bash scripts/install_browser.sh

app: models browser  # the browser: PNG/SVG export of figures (kaleido drives Chromium)
	$(BIN)/streamlit run app.py --server.port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy sra_viz

test: models browser lint
	$(BIN)/python -m pytest -ra --durations=15 -n 2 --dist loadgroup

bench: models
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
