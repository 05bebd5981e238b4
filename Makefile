# Every target sets up what it needs on first use: the virtualenv (.venv), and for the
# cluster targets the local control plane (built once into ~/.cache/suanli).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(CURDIR)/.cluster/bin:$(BIN):$(PATH)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST := $(BIN)/python -m pytest

.PHONY: help venv tools docs cluster-build test unit lint crds verify integration e2e bench cluster-up cluster-down demo plan clean

help:
	@echo "make demo     local control plane + operator + example fleet and jobs, live"
	@echo "make test     lint, verify, unit, integration and e2e tests (builds the control plane once)"
	@echo "make unit     the pure-core unit tests only (seconds)"
	@echo "make bench    benchmarks; results in reports/bench/"

$(STAMP): pyproject.toml
	@echo ">> setting up $(VENV) (first run only)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

test: venv lint verify tools unit cluster-up integration e2e

tools:
	bash tests/tools/install_tools.sh

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

cluster-build:
	bash tests/cluster/build.sh

cluster-up:
	bash tests/cluster/up.sh

cluster-down:
	bash tests/cluster/down.sh

plan: venv
	$(BIN)/suanli plan -f crds/examples

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

demo: venv cluster-up
	$(BIN)/python tests/cluster/demo.py
