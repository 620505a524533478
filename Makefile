# Thin verbs over the tools. Every target sets up the virtual environment itself when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AWS_ACCOUNT_ID_ENDPOINT_MODE := disabled

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit test-integration test-deployed lint fmt typecheck validate cycles build deploy bench clean example node-deps wheel

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

test: $(STAMP) lint typecheck cycles validate ## The whole test suite (lint, types, import cycles, template, unit, integration, end to end)
	$(BIN)/python -m pytest

test-unit: $(STAMP) ## Unit tests only (no network)
	$(BIN)/python -m pytest tests/unit

test-integration: $(STAMP) ## Integration tests only (moto, sockets on loopback)
	$(BIN)/python -m pytest tests/integration

lint: $(STAMP) ## ruff
	$(BIN)/ruff check functions infra tests bench

fmt: $(STAMP) ## Format and fix what ruff can
	$(BIN)/ruff check --fix functions infra tests bench

typecheck: $(STAMP) ## mypy --strict over functions/ (handlers included), infra/ and bench/
	$(BIN)/mypy

validate: $(STAMP) ## Check template.yaml offline: cfn-lint, SAM translation, IAM per handler, a stack in moto
	$(BIN)/python -m iii_stream.infra.validate

cycles: $(STAMP) ## Fail on an import cycle among the project's modules
	$(BIN)/python -m iii_stream.infra.check_cycles

wheel: $(STAMP) ## The package for your own app's environment: dist/iii_stream_aws-<version>-py3-none-any.whl
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .

build: ## sam build: the deployable artifacts in .aws-sam/build (needs the SAM CLI)
	@command -v sam >/dev/null || { echo "make build needs the AWS SAM CLI: pipx install aws-sam-cli (see README, Deploy to AWS)" >&2; exit 1; }
	sam build

deploy: build ## sam deploy (--guided the first time, then samconfig.toml): your AWS account
	sam deploy $(if $(wildcard samconfig.toml),,--guided)

test-deployed: $(STAMP) ## End-to-end tests against a deployed stack: make test-deployed STACK=<stack name>
	@test -n "$(STACK)" || { echo "usage: make test-deployed STACK=<stack name>" >&2; exit 2; }
	IIIS_STACK_NAME=$(STACK) $(BIN)/python -m pytest --noconftest -m deployed tests/deployed

node-deps: tests/e2e/node/node_modules/.package-lock.json examples/todo/node_modules/.package-lock.json ## npm ci for the e2e tests and the example (the published clients)

%/node_modules/.package-lock.json: %/package-lock.json
	cd $* && npm ci --no-audit --no-fund --loglevel=error

EXAMPLE_PORT ?= 8080
example: $(STAMP) examples/todo/node_modules/.package-lock.json ## The example to-do page on :8080 and the local service with its app (Ctrl-C stops both)
	@echo "The example page: http://127.0.0.1:$(EXAMPLE_PORT)/?user=alice  (it reads ws://127.0.0.1:3112/ and writes through http://127.0.0.1:3000)"
	$(BIN)/python -m http.server $(EXAMPLE_PORT) --bind 127.0.0.1 --directory examples/todo >/dev/null 2>&1 & server=$$!; \
	trap 'kill $$server 2>/dev/null' EXIT; \
	$(BIN)/iii-stream local --app examples/todo/app.py

bench: $(STAMP) ## Benchmarks (speed, AWS request counts); prints a report
	$(BIN)/python -m bench

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist .aws-sam *.egg-info
