# Two commands a newcomer needs: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
NODES ?= 1
VENV := .venv
PY := $(VENV)/bin/python
# where scripts/ and the test fixtures keep built binaries and images (not the worker's cache)
DATASETJOB_BUILD_CACHE ?= $(HOME)/.cache/datasetjob
export DATASETJOB_BUILD_CACHE

.DEFAULT_GOAL := help
.PHONY: help demo test doctor prerequisites verify venv services controlplane helm kueue prometheus images cluster chaos cluster-clean unit integration e2e bench manifests clean

# The sample generators are not part of the distribution; a .pth file puts their directory on
# the venv's import path (as PYTHONPATH=/opt/generators does in the sample image), so the demo,
# the tests and the benches import smart_money from generator-image/examples.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c 'import sys, sysconfig, pathlib; pathlib.Path(sysconfig.get_path("purelib"), "datasetjob-examples.pth").write_text(sys.argv[1] + "\n")' \
	    '$(CURDIR)/generator-image/examples'
	touch $@

venv: $(VENV)/.installed  ## the Python environment (.venv) with the project and its dev tools

help:  ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## (.*)/  make \1\t\2/' | expand -t 22

prerequisites:  ## the system packages of scripts/prerequisites.txt (apt-get; only what is missing)
	scripts/install-prerequisites.sh

doctor:  ## every prerequisite found or missing, and what is built and cached; exit 1 when one is missing
	$(PYTHON) scripts/doctor.py

services: prerequisites  ## redis-server and the S3-compatible server used by the tests
	scripts/install-services.sh

kueue: prerequisites  ## Kueue's controller for the e2e queueing scenario (built once, cached)
	scripts/build-kueue.sh

prometheus: prerequisites  ## prometheus and promtool (alert-rule tests, e2e scrape) and the prometheus-operator CRDs (built once, cached)
	scripts/build-prometheus.sh

controlplane: prerequisites  ## etcd, kube-apiserver, -controller-manager, -scheduler, kubelet, kube-proxy, helm (built once, cached)
	scripts/build-control-plane.sh

helm: prerequisites  ## helm alone (built once, cached): what make verify renders the chart with
	scripts/build-control-plane.sh --helm-only

images: services  ## the node's container images (podman, cached); archives under $(DATASETJOB_BUILD_CACHE)/images
	tests/e2e/harness/node-images.sh
	scripts/build-images.sh

demo: venv  ## run the 3,600-item sample on this machine (the embedded default)
	$(VENV)/bin/dsj run manifests/samples/smart-money-flow.yaml --workers 10

test: prerequisites verify services controlplane kueue prometheus images  ## set everything up, then make verify and every test tier
	$(VENV)/bin/pytest -q tests/unit tests/integration tests/e2e

verify: venv prerequisites helm  ## lint, formatting, types, import layers, shell scripts, generated manifests, nothing uncommitted
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	shellcheck -x scripts/*.sh tests/e2e/harness/*.sh tests/e2e/kind/run.sh
	$(PY) scripts/render-manifests.py --check
	git diff --stat --exit-code

unit: venv prerequisites  ## the unit tests (pure logic, seconds)
	$(VENV)/bin/pytest -q tests/unit

integration: venv services  ## the integration tests (real redis-server and S3 server)
	$(VENV)/bin/pytest -q tests/integration

e2e: venv services controlplane kueue prometheus images  ## the end-to-end tests on a real node
	$(VENV)/bin/pytest -q tests/e2e

cluster: venv services controlplane images  ## a cluster with the chart installed, in the foreground (NODES=3: three nodes)
	$(PY) -m tests.e2e.harness --nodes $(NODES)

chaos: venv services controlplane images  ## every fault in turn against one long DatasetJob on three nodes; prints a table
	$(PY) -m tests.e2e.chaos

cluster-clean: venv  ## remove what a killed `make cluster` or test run left behind
	$(PY) -m tests.e2e.harness clean

bench: venv services controlplane images  ## the benchmarks (ratios measured side by side)
	$(PY) tests/bench/bench_local.py
	$(PY) tests/bench/bench_reuse.py
	$(PY) tests/bench/bench_redis.py
	$(PY) tests/bench/bench_operator.py
	$(PY) tests/bench/bench_templates.py
	$(PY) tests/bench/bench_scale.py
	$(PY) tests/bench/bench_limits.py
	$(PY) tests/bench/bench_budget.py

manifests: venv helm  ## regenerate CRD copies, manifests/ and the Argo CD patch
	$(PY) scripts/render-manifests.py

clean:  ## remove the venv, local datasets and cluster state (not the build cache)
	rm -rf $(VENV) datasets .cluster
