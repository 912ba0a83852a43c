# ctsync: every target sets up .venv first if needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WAREHOUSE ?= warehouse.duckdb
DEMO_DIR ?= demo

.DEFAULT_GOAL := help

.PHONY: help setup constraints demo demo-rerun serve deployments test lint typecheck pytest bench bench-build clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/pip check
	touch $@

setup: $(VENV)/.installed ## Create .venv and install ctsync with its dev tools (versions pinned by constraints.txt)

constraints: ## Resolve the dependencies of pyproject.toml afresh and pin them all in constraints.txt
	rm -rf .constraints-venv
	$(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/pip install --quiet --upgrade pip
	.constraints-venv/bin/pip install --quiet -e ".[dev,spark]"
	.constraints-venv/bin/pip check
	{ sed -n '/^#/p' constraints.txt; .constraints-venv/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .constraints-venv

demo: setup ## Sample export -> pipeline flow (load, dbt build, sync to demo/identify.jsonl) -> report
	$(BIN)/python -m flows.demo --warehouse $(WAREHOUSE)

demo-rerun: setup ## Run the pipeline again on the demo warehouse (an unchanged rerun sends nothing)
	$(BIN)/python -m flows.demo --rerun --warehouse $(WAREHOUSE)

serve: setup ## Serve every deployment of prefect.yaml from this process (Ctrl-C to stop)
	$(BIN)/python -m flows.serve

deployments: setup ## Rewrite prefect.yaml from ctsync.yml and check it
	$(BIN)/python -m flows.deployments write

lint: setup ## ruff (lint and format check)
	$(BIN)/ruff check ctsync tests flows benchmarks
	$(BIN)/ruff format --check ctsync tests flows benchmarks

typecheck: setup ## mypy --strict on ctsync/
	$(BIN)/mypy

pytest: setup ## The test suite
	$(BIN)/pytest

test: lint typecheck pytest ## Everything CI checks: lint, types, tests

bench: setup ## Load benchmark (1M events; EVENTS=... to change)
	$(BIN)/python benchmarks/load.py --events $${EVENTS:-1000000}

bench-build: setup ## dbt build benchmark (10M events, 1M users)
	$(BIN)/python benchmarks/build.py --events 10000000 --users 1000000

clean: ## Remove the demo output, the warehouse and caches
	rm -rf $(DEMO_DIR) $(WAREHOUSE) $(WAREHOUSE).wal target logs .pytest_cache .mypy_cache .ruff_cache
