# ctsync: every target sets up .venv first if needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WAREHOUSE ?= warehouse.duckdb
DEMO_DIR ?= demo

.DEFAULT_GOAL := help

.PHONY: help setup demo test lint typecheck pytest bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed ## Create .venv and install ctsync with its dev tools

demo: setup ## Write a sample CleverTap export and load it into $(WAREHOUSE)
	rm -rf $(DEMO_DIR)/export
	$(BIN)/ctsync sample $(DEMO_DIR)/export --events 20000 --users 1000 --timezone Asia/Kolkata
	$(BIN)/ctsync load $(DEMO_DIR)/export --nickname CleverTap_Prod --timezone Asia/Kolkata --warehouse $(WAREHOUSE)

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

clean: ## Remove the demo output, the warehouse and caches
	rm -rf $(DEMO_DIR) $(WAREHOUSE) $(WAREHOUSE).wal target logs .pytest_cache .mypy_cache .ruff_cache
