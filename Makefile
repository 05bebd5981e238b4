# Every target sets up what it needs on first use: the virtualenv (.venv), and for the
# cluster targets the local control plane (built once into ~/.cache/suanli).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(CURDIR)/.cluster/bin:$(BIN):$(PATH)
LOCK := requirements.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
PYTEST := $(BIN)/python -m pytest

.PHONY: help venv tools image docs cluster-build test unit lint crds verify integration e2e bench chaos cluster-up cluster-down cluster-restart demo demo-down plan clean

help:
	@echo "make demo     local hub + two member clusters + operator + example fleet and jobs, live"
	@echo "make demo-down  stop the demo's operator and its clusters"
	@echo "make test     lint, verify, unit, integration and e2e tests (builds the control plane once)"
	@echo "make unit     the pure-core unit tests only (seconds)"
	@echo "make image    the operator image with podman (IMAGE=localhost/suanli:dev; docs/image.md)"
	@echo "make bench    benchmarks; results in reports/bench/"
	@echo "make chaos    300+ jobs under 50+ injected faults, invariants checked throughout; report in reports/chaos/"

# Exactly what requirements.lock pins, hash-checked (pip, setuptools and uv included): nothing is
# resolved here. Then the project itself, editable, without dependencies or a build environment.
$(STAMP): pyproject.toml $(LOCK)
	@echo ">> setting up $(VENV) (first run only)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes -r $(LOCK)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# Regenerates requirements.lock from pyproject.toml with the pinned uv, keeping every pin that is
# still allowed; `make lock LOCK_ARGS=--upgrade` moves all pins to the newest allowed,
# `LOCK_ARGS='--upgrade-package NAME'` one. Then `make` reinstalls from it.
.PHONY: lock
lock: venv
	$(BIN)/uv pip compile pyproject.toml --extra dev --group build --universal --generate-hashes \
	    --custom-compile-command 'make lock' --quiet $(LOCK_ARGS) -o $(LOCK)

test: venv lint verify tools unit cluster-up integration e2e

tools:
	bash tests/tools/install_tools.sh

# The operator image from the Dockerfile with podman (no Docker needed), tagged IMAGE. The base is
# IMAGE_BASE: official (the Dockerfile's python slim image, pulled), local (Debian bookworm's python3
# made here with mmdebstrap) or auto (official when it can be pulled, else local). Cached outside the
# repo: a second build takes seconds. See docs/image.md.
IMAGE ?= localhost/suanli:dev
IMAGE_BASE ?= auto
image:
	IMAGE='$(IMAGE)' IMAGE_BASE='$(IMAGE_BASE)' bash tests/tools/image.sh build

unit: venv
	$(PYTEST) tests/unit -q

lint: venv
	$(BIN)/ruff check operator tests helm
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(PYTEST) tests/unit/test_purity.py -q -p no:cacheprovider

crds: venv
	$(BIN)/python -m suanli.api.crdgen --out crds
	$(BIN)/python helm/gen_chart.py

verify: venv
	$(BIN)/python -m suanli.api.crdgen --out crds --check
	$(BIN)/python helm/gen_chart.py --check
	$(BIN)/python tests/tools/readme_tables.py --check

docs: venv
	$(BIN)/python tests/tools/readme_tables.py

integration: venv cluster-up
	$(PYTEST) tests/integration -q

e2e: venv cluster-up
	$(PYTEST) tests/e2e -q

bench: venv
	$(PYTEST) tests/bench -q -p no:cacheprovider -m bench --timeout 1800

# The full chaos scenario (seed: SUANLI_CHAOS_SEED); a short one runs in make e2e (tests/e2e/test_chaos_short.py).
chaos: venv cluster-up
	$(PYTEST) tests/chaos -q -m chaos -p no:cacheprovider

cluster-build:
	bash tests/cluster/build.sh

# CLUSTER=NAME (make cluster-up CLUSTER=guian): a further, independent local cluster, state and
# kubeconfig in .cluster/NAME/, free ports chosen automatically; without it the default one.
# The scripts read CLUSTER from the environment (make exports command-line variables).
cluster-up:
	bash tests/cluster/up.sh

cluster-down:
	bash tests/cluster/down.sh

# Stops one component and starts it again after DOWN_SECONDS (an outage drill; CLUSTER=NAME too).
COMPONENT ?= kube-apiserver
DOWN_SECONDS ?= 0
cluster-restart:
	bash tests/cluster/restart.sh '$(COMPONENT)' '$(DOWN_SECONDS)'

plan: venv
	$(BIN)/suanli plan -f crds/examples

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

demo: venv cluster-up
	$(BIN)/python tests/cluster/demo.py

# Everything `make demo` left running: its operator, its member clusters (demo-west, demo-east) and
# the hub (CLUSTER=NAME: that hub). Safe to run when nothing runs.
DEMO_MEMBERS := demo-west demo-east
demo-down: venv
	$(BIN)/python tests/cluster/demo.py --stop
	for member in $(DEMO_MEMBERS); do CLUSTER=$$member bash tests/cluster/down.sh; done
	bash tests/cluster/down.sh
