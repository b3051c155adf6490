# qcline: `make demo` (base install, no torch) and `make test` (train + dev extras, whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo demo-line test lint typecheck layers bench system-deps clean train-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.base-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[train,dev]'
	touch $@ $(VENV)/.base-installed

demo: $(VENV)/.base-installed
	$(BIN)/qcline demo

# Units passing a station on a simulated line (PLC + RTSP cameras on loopback): drills/line_simulator.py
demo-line: $(VENV)/.base-installed
	$(BIN)/qcline demo --line

# The training extra (torch, ultralytics) on top of a station install: what `qcline train` needs.
train-deps: $(VENV)/.base-installed
	$(BIN)/python -m pip install -q -e '.[train]'

system-deps:
	bash scripts/install-system-deps.sh

# Two workers (files kept whole per worker: module fixtures and peers stay per file); TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: $(VENV)/.dev-installed system-deps lint typecheck layers
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check -q inspection training datasets models api tests bench drills

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy inspection training datasets models api drills

# The import contract in pyproject.toml [tool.importlinter] (docs/architecture.md explains it).
layers: $(VENV)/.dev-installed
	$(BIN)/lint-imports

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/inference.py

clean:
	rm -rf data runs test-artifacts .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
