# Two entry points do all set-up on a fresh machine:
#   make demo   - creates .venv, installs, denoises the bundled sample, writes a side-by-side PNG
#   make test   - creates .venv, installs (plus Xvfb for the napari widget tests), runs the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint napari benchmark system-deps clean

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/denoise-studio demo --out demo_output --force

# The widget tests need an X server: Xvfb and the xcb libraries Qt loads (see docs/development.md).
system-deps:
	@bash scripts/install-system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

# Opens napari with the plugin docked and a sample loaded (needs a display).
napari: $(STAMP)
	$(BIN)/denoise-studio gui

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

benchmark: $(STAMP)
	$(BIN)/python benchmarks/benchmark_fmd.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
