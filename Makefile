# Thin verbs over the tools. Every target sets up the virtual environment itself when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AWS_ACCOUNT_ID_ENDPOINT_MODE := disabled

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit test-integration lint fmt typecheck bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with its dev tools

run: $(STAMP) ## Run the local service on its embedded defaults (Ctrl-C stops it)
	$(BIN)/iii-stream local

test: $(STAMP) lint typecheck ## The whole test suite (lint, types, unit, integration)
	$(BIN)/python -m pytest

test-unit: $(STAMP) ## Unit tests only (no network)
	$(BIN)/python -m pytest tests/unit

test-integration: $(STAMP) ## Integration tests only (moto, sockets on loopback)
	$(BIN)/python -m pytest tests/integration

lint: $(STAMP) ## ruff
	$(BIN)/ruff check functions infra tests bench

fmt: $(STAMP) ## Format and fix what ruff can
	$(BIN)/ruff check --fix functions infra tests bench

typecheck: $(STAMP) ## mypy --strict on the Lambda code
	$(BIN)/mypy

bench: $(STAMP) ## Benchmarks (speed, AWS request counts); prints a report
	$(BIN)/python -m bench

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
