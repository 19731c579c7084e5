# cxstream developer tasks (GNU make). `make help` lists them.
#
#   make test         every layer: unit, agents, integration (starts its own Kafka), faults, rule tests
#   make test-unit    unit + agents only: no broker, no Java
#   make broker-up    a local Kafka on 127.0.0.1:19092 (state in .cxstream/, see cxstream/broker.py)
#   make demo         broker + worker + generator, via `cxstream demo`

PY       ?= python3
VENV     ?= .venv
PYTEST   ?= $(VENV)/bin/python -m pytest
PYTEST_ARGS ?=
ARGS     ?=
PROMTOOL ?= promtool

BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip install -q --disable-pip-version-check
BROKER := $(BIN)/python -m cxstream.cli.broker

# pip never prompts (CI=true, no stdin).
export PIP_NO_INPUT := 1

# Prometheus rule files and their promtool unit tests, once deploy/prometheus exists.
PROM_RULES := $(wildcard deploy/prometheus/rules/*.yml deploy/prometheus/*rules*.yml)
PROM_TESTS := $(wildcard deploy/prometheus/tests/*.yml deploy/prometheus/*test*.yml)

.DEFAULT_GOAL := help
.PHONY: help venv install test test-unit test-integration test-faults test-faults-full test-rules lint \
        broker-up broker-down broker-status broker-reset demo bench clean distclean

help:
	@echo "targets: install test test-unit test-integration test-faults test-faults-full test-rules lint"
	@echo "         broker-up broker-down broker-status broker-reset demo bench clean distclean"
	@echo "vars:    PY=$(PY) VENV=$(VENV) PYTEST_ARGS='...' ARGS='...' (for demo/bench)"

$(BIN)/python:
	$(PY) -m venv $(VENV)

venv: $(BIN)/python

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	@touch $@

install: $(STAMP)

test: $(STAMP) prometheus
	$(PYTEST) -q tests $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-faults
	$(MAKE) --no-print-directory test-rules

test-unit: $(STAMP)
	$(PYTEST) -q tests/unit tests/agents $(PYTEST_ARGS)

# Fault injection (kill -9, rebalance, broker restart; docs/reliability.md) on a
# 108,589-event stream (~8 minutes, its own broker): marked `faults`, run by `make test`
# as a step of its own.
test-faults: $(STAMP)
	$(PYTEST) -q tests/integration/test_faults.py -m faults $(PYTEST_ARGS)

# The same scenarios on twice the stream (3,000 customers, ~217k events); longer than
# CI allows.
test-faults-full: $(STAMP)
	CXSTREAM_TEST_FAULT_CUSTOMERS=3000 $(PYTEST) -q tests/integration/test_faults.py -m faults $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(PYTEST) -q tests/integration $(PYTEST_ARGS)

# Prometheus config and rules: `promtool check config|rules` and the promtool unit
# tests in deploy/prometheus/tests (installs Prometheus first if promtool is missing).
test-rules: prometheus
ifeq ($(wildcard deploy/prometheus),)
	@echo "test-rules: no deploy/prometheus yet, nothing to test"
else
	@command -v $(PROMTOOL) >/dev/null || { echo "test-rules: $(PROMTOOL) not found (make prometheus)" >&2; exit 1; }
	$(if $(wildcard deploy/prometheus/prometheus.yml),$(PROMTOOL) check config deploy/prometheus/prometheus.yml)
	$(if $(PROM_RULES),$(PROMTOOL) check rules $(PROM_RULES),@echo "test-rules: no rule files")
	$(if $(PROM_TESTS),$(PROMTOOL) test rules $(PROM_TESTS),@echo "test-rules: no rule tests")
endif

# Debian's `prometheus` package: `prometheus` (the server the dashboard test runs)
# and `promtool` (rule checks and tests). Only when promtool is missing; needs root
# (or sudo). A policy-rc.d keeps the package from starting a server on :9090
# (removed again unless it was already there); a service that started anyway is
# stopped (and disabled under systemd).
.PHONY: prometheus
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && exit 0; \
	set -e; \
	SUDO=; if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	echo "prometheus: installing Debian's prometheus package (promtool, prometheus)"; \
	start=$$(date +%s); \
	own_policy=; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
		printf '#!/bin/sh\nexit 101\n' | $$SUDO tee /usr/sbin/policy-rc.d >/dev/null; \
		$$SUDO chmod 755 /usr/sbin/policy-rc.d; own_policy=1; \
	fi; \
	log=$$(mktemp); rc=0; \
	{ $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold prometheus; \
	} >"$$log" 2>&1 || rc=$$?; \
	if [ -n "$$own_policy" ]; then $$SUDO rm -f /usr/sbin/policy-rc.d; fi; \
	[ $$rc = 0 ] || { cat "$$log" >&2; rm -f "$$log"; echo "prometheus: apt-get failed ($$rc)" >&2; exit $$rc; }; \
	rm -f "$$log"; \
	if [ -d /run/systemd/system ]; then $$SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true; \
	else $$SUDO service prometheus stop >/dev/null 2>&1 || true; fi; \
	echo "prometheus: installed in $$(( $$(date +%s) - start ))s: $$(prometheus --version 2>&1 | head -n 1)"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy -p cxstream

broker-up: $(STAMP)
	$(BROKER) up

broker-down: $(STAMP)
	$(BROKER) down

broker-status: $(STAMP)
	$(BROKER) status

broker-reset: $(STAMP)
	$(BROKER) reset

demo: $(STAMP)
	$(BIN)/cxstream demo $(ARGS)

bench: $(STAMP)
	$(BIN)/cxstream bench $(ARGS)

# Build and tool caches; keeps the venv, the Kafka jars and any running broker.
clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Everything generated, including the venv and .cxstream (stops the broker first).
distclean: clean
	-test -x $(BIN)/python && $(BROKER) down
	-test -x $(BIN)/python && CXSTREAM_HOME=.cxstream/test CXSTREAM_BROKER_PORT=29092 \
		CXSTREAM_BROKER_CONTROLLER_PORT=29093 $(BROKER) down
	rm -rf $(VENV) .cxstream
