# Every target bootstraps what it needs: on a fresh machine `make run` and `make test` suffice.
SHELL := /bin/bash
PY ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint format typecheck bench all clean

install: $(VENV)/.installed

.tools/bin/uv:
	$(PY) -m venv .tools
	.tools/bin/pip install -q uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PY)
	touch $@

run: install  ## serve on the embedded defaults (SQLite, in-process cache, built-in provider simulator)
	$(BIN)/sms-dispatch serve

test: install  ## the whole test suite (PostgreSQL and Redis tests skip locally when absent, fail under CI=true)
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

typecheck: install
	$(BIN)/mypy

bench: install  ## every benchmark in one sitting (installs the peers it compares with: uv group "bench")
	$(UV) sync --frozen --group bench --python $(PY)
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

all: lint typecheck test

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
