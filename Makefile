# Landfall — one entry point for people and CI.  `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements.lock
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help deps lock audit lint format test test-fast stress up down clean bench chaos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Everything `.[servers,dev]` pulls in comes from $(LOCK), pinned with hashes; then Landfall itself, no deps.
$(STAMP): pyproject.toml $(LOCK)
	@echo "==> creating the virtualenv and installing Landfall with its real servers (pip wheels, $(LOCK))"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	@$(PY) -m pip install --quiet --no-deps -e . --config-settings editable_mode=compat
	@touch $(STAMP)

lock: ## regenerate requirements.lock (hashes) from pyproject.toml; UPGRADE=1 moves every pin to the newest
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/pip-compile || $(PY) -m pip install --quiet pip-tools
	@echo "==> pip-compile --generate-hashes (.[servers,dev], Python $$($(PY) -c 'import sys; print(sys.version.split()[0])'))"
	@CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	  --strip-extras --extra servers --extra dev --no-emit-index-url --no-emit-find-links \
	  $(if $(UPGRADE),--upgrade) --output-file $(LOCK) pyproject.toml

# Which vulnerability service pip-audit can use from here: PyPI's JSON API, else OSV; 5 s each, so lint never hangs.
define AUDIT_PROBE
import json, sys, urllib.request
version = sys.argv[1]
probes = [
    ("pypi", f"https://pypi.org/pypi/aiohttp/{version}/json", None),
    ("osv", "https://api.osv.dev/v1/query",
     json.dumps({"package": {"name": "aiohttp", "ecosystem": "PyPI"}, "version": version}).encode()),
]
failed = []
for service, url, body in probes:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except Exception as exc:
        failed.append(f"{url}: {exc}")
    else:
        print(service)
        sys.exit()
print("vulnerability audit skipped: cannot reach PyPI's or OSV's vulnerability data (" + "; ".join(failed) + ")")
endef
export AUDIT_PROBE

audit: deps ## pip-audit of requirements.lock (skipped, with a line saying so, when its data is out of reach)
	@echo "==> pip-audit ($(LOCK))"
	@probe=$$($(PY) -c "$$AUDIT_PROBE" "$$(sed -n 's/^aiohttp==\([^ ]*\).*/\1/p' $(LOCK))"); \
	 case "$$probe" in \
	   pypi|osv) $(VENV)/bin/pip-audit --requirement $(LOCK) --require-hashes --disable-pip --progress-spinner off \
	               --timeout 15 --vulnerability-service "$$probe" ;; \
	   *) echo "$$probe" ;; \
	 esac

/usr/bin/docker-registry:
	@echo "==> installing Debian's docker-registry (CNCF distribution) for registry tests and the local registry"
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null; \
	 else echo "run as root, or: sudo apt-get install -y docker-registry" >&2; exit 1; fi

/usr/bin/wrk:
	@echo "==> installing Debian's wrk (HTTP load generator) for the benchmarks"
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	 else echo "run as root, or: sudo apt-get install -y wrk" >&2; exit 1; fi

/usr/bin/stress:
	@echo "==> installing Debian's stress (CPU load generator) for make stress"
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress >/dev/null; \
	 else echo "run as root, or: sudo apt-get install -y stress" >&2; exit 1; fi

/usr/bin/chromium:
	@echo "==> installing Debian's chromium and chromium-driver for the console's browser test"
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	 else echo "run as root, or: sudo apt-get install -y chromium chromium-driver" >&2; exit 1; fi

deps: $(STAMP) /usr/bin/docker-registry /usr/bin/wrk /usr/bin/chromium ## make the virtualenv and install everything (idempotent)

lint: deps ## ruff, ruff format --check, mypy --strict, the import layering check, pip-audit of the lock
	@echo "==> ruff"; $(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@echo "==> mypy --strict"; $(VENV)/bin/mypy libs services bench chaos tests
	@echo "==> import-linter (services never import each other; adapters own their clients)"; $(VENV)/bin/lint-imports
	@$(MAKE) --no-print-directory audit

format: deps ## apply ruff fixes and formatting
	@$(VENV)/bin/ruff check --fix . ; $(VENV)/bin/ruff format .

test: lint ## lint, then every test against real NATS, PostgreSQL, OpenBao, docker-registry and the Kubernetes emulator
	@echo "==> pytest (unit, integration, e2e)"
	@$(PY) -m pytest

test-fast: deps ## unit and integration tests only, no lint
	@$(PY) -m pytest tests/unit tests/integration

# Each pass's whole pytest output is kept in build/stress/pass-<n>.log; stress stops with the target (or after 3 h).
# STRESS_TESTS narrows the paths (default: the integration and e2e tiers, which are directories).
PASSES ?= 3
STRESS_TESTS ?= tests/integration tests/e2e
stress: deps /usr/bin/stress ## integration and e2e tiers PASSES=3 times under `stress --cpu 2`; stops at a failing pass
	@mkdir -p build/stress
	@setsid stress --cpu 2 --timeout 10800 >/dev/null 2>&1 & load=$$!; trap 'kill -- -$$load 2>/dev/null' EXIT; \
	 for pass in $$(seq 1 $(PASSES)); do \
	   echo "==> pass $$pass of $(PASSES): pytest $(STRESS_TESTS) under stress --cpu 2"; \
	   log=build/stress/pass-$$pass.log; start=$$(date +%s); \
	   $(PY) -m pytest -q -p no:cacheprovider --durations=10 --durations-min=0 $(STRESS_TESTS) >$$log 2>&1; \
	   rc=$$?; wall=$$(( $$(date +%s) - start )); \
	   sed -n '/slowest 10 durations/,/^$$/p' $$log | sed '/^$$/d'; \
	   grep -E '^(FAILED|ERROR) ' $$log || true; \
	   echo "pass $$pass: $$(tail -n 1 $$log | sed 's/^=* *//; s/ *=*$$//'); wall $$wall s; output in $$log"; \
	   if [ $$rc -ne 0 ]; then echo "pass $$pass failed (pytest exit $$rc): stopping" >&2; exit $$rc; fi; \
	 done; echo "==> $(PASSES) passes in a row under stress --cpu 2"

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

.PHONY: manifests image
IMAGE ?= landfall:dev

manifests: $(STAMP) ## render every kustomization of deploy/kubernetes to build/manifests/<name>.yaml (INSTALL.md)
	@echo "==> rendering deploy/kubernetes (deploy/kubernetes/render.py; kubectl apply -k reads the same files)"
	@$(PY) deploy/kubernetes/render.py --out build/manifests

image: ## build the one image of every service (deploy/docker/Dockerfile) as IMAGE=landfall:dev, where Docker runs
	@if ! command -v docker >/dev/null 2>&1; then \
	   echo "make image: Docker is not installed on this machine, so no image was built." >&2; \
	   echo "  Build it where Docker runs: docker build -f deploy/docker/Dockerfile -t $(IMAGE) ." >&2; exit 1; \
	 elif ! docker info >/dev/null 2>&1; then \
	   echo "make image: the docker command is here but no Docker daemon answers, so no image was built." >&2; \
	   echo "  Start Docker (or point DOCKER_HOST at one), then run make image again." >&2; exit 1; \
	 fi
	@echo "==> docker build -f deploy/docker/Dockerfile -t $(IMAGE) ."
	@docker build -f deploy/docker/Dockerfile -t $(IMAGE) .
