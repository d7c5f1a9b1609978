# Two entry points: `make demo` and `make test`. Both create the virtualenv when it
# is missing and (re)install when pyproject.toml or the constraints change.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt
PIP := $(BIN)/python -m pip --disable-pip-version-check
SHARED_DATA := $(abspath ../shared/data)
PERPTRADER_DEMO_DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
export PERPTRADER_DEMO_DATA

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch goes in first, pinned, so that nothing later pulls a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(PIP) install -q --progress-bar off "torch==2.13.0"
	$(PIP) install -q --progress-bar off -c $(CONSTRAINTS) -e ".[dev,distributed,tracking]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/perptrader demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

BENCH_STAMP := $(VENV)/.installed-bench

# the peers the benchmarks measure against (pandas-ta-classic, vectorbt, backtesting.py)
$(BENCH_STAMP): $(STAMP)
	$(PIP) install -q --progress-bar off -c $(CONSTRAINTS) -e ".[dev,distributed,tracking,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/bench_store.py
	$(BIN)/python bench/bench_features.py
	$(BIN)/python bench/bench_backtest.py
	$(BIN)/python bench/bench_xlstm.py
	$(BIN)/python bench/bench_rl.py
	$(BIN)/python bench/bench_decide.py
	$(BIN)/python bench/bench_collect.py
	$(BIN)/python bench/bench_orders.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
