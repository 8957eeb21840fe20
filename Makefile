# telemetry-pipeline: `make demo` and `make test` work from a fresh clone with python3 + make.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DBT_SEND_ANONYMOUS_USAGE_STATS ?= false
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-external bench bench-scale loadtest lint format clean serve

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	@rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

setup: $(STAMP) ## Create .venv with the pinned dependencies (constraints.txt)

demo: setup ## Migrate, backfill one simulated day, build KPIs, print a summary
	$(BIN)/telemetry demo

serve: setup ## Prefect server + UI (:4200), deployments, a worker and the API (:8000) on loopback; Ctrl-C stops all
	$(BIN)/telemetry serve

test: setup ## Lint, then run the whole test suite (embedded PostgreSQL unless DATABASE_URL is set)
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

test-external: setup ## Run the tests against the PostgreSQL at 127.0.0.1:5432
	DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test $(BIN)/pytest -n 2 $(PYTEST_ARGS)

bench: setup ## Every stage beside its raw reference (never part of make test); make bench ARGS="--rows 10000000"
	$(BIN)/python -m bench $(ARGS)

bench-scale: setup ## Per-stage costs at a fleet size, and devices per machine (docs/SCALING.md)
	$(BIN)/python -m bench.bench_scale $(ARGS)

loadtest: setup ## 100 clients x 30 s against the real API: 0 errors, 0 lost readings (never part of make test); make loadtest ARGS="--seconds 60"
	$(BIN)/python -m bench.loadtest $(ARGS)

lint: setup ## ruff check
	$(BIN)/ruff check .

format: setup ## ruff format + fix imports
	$(BIN)/ruff check --fix --select I .
	$(BIN)/ruff format .

clean: ## Remove generated output (keeps .venv; `rm -rf .venv .data` for everything)
	rm -rf dbt/target dbt/logs reports/out bench/out .pytest_cache .ruff_cache .hypothesis
