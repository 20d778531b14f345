# coinflow — two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed-stamp
export DVC_NO_ANALYTICS := 1
export GIT_PYTHON_REFRESH := quiet
# dvc.yaml stages call `coinflow <command>`: make that the venv's.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test test-fast lint airflow

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# CPU torch first (a wheel on disk, found by this machine's pip config); the project's torch
	# range admits it, so the install below keeps it.
	$(PY) -m pip install -q torch==2.13.0
	# The rest through uv (from PyPI, like pip, resolving and installing in parallel: ~15 s
	# against ~2.5 min with pip on 2 cores); it keeps every installed package that satisfies.
	# --compile-bytecode: every .pyc written once here (~20 s). uv writes none by default, and
	# where PYTHONDONTWRITEBYTECODE is set (Dockerfile, CI) each process recompiled MLflow,
	# pandas, GE... on import: ~2.5 s of CPU in every command, stage, task and server.
	$(PY) -m pip install -q 'uv>=0.9,<1'
	$(BIN)/uv pip install -q --compile-bytecode --python $(PY) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install  ## the whole chain on embedded defaults, then the API + UI until Ctrl-C
	scripts/demo.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite on both cores (tests sharing a built world run on one worker: tests/conftest.py).
test: lint
	$(BIN)/dvc pull -q data.dvc
	$(PY) -m pytest -n 2 --dist loadgroup; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc

# The inner loop (≤ 90 s): unit, data-rule, model and in-process API tests; no service, no server.
test-fast: install
	$(BIN)/dvc pull -q data.dvc
	$(PY) -m pytest -n 2 --dist loadgroup -m "(unit or model) and not slow"; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc

airflow: install  ## Airflow 3 locally (airflow standalone, SQLite in .airflow/); prints UI address + login
	scripts/airflow_local.sh
