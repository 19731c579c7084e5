# cxstream developer tasks (GNU make). `make help` lists them.
#
#   make test         every layer: unit, agents, integration (starts its own Kafka), rule tests
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
BROKER := $(BIN)/python -m cxstream.broker

# pip never prompts (CI=true, no stdin).
export PIP_NO_INPUT := 1

# Prometheus rule files and their promtool unit tests, once deploy/prometheus exists.
PROM_RULES := $(wildcard deploy/prometheus/rules/*.yml deploy/prometheus/*rules*.yml)
PROM_TESTS := $(wildcard deploy/prometheus/tests/*.yml deploy/prometheus/*test*.yml)

.DEFAULT_GOAL := help
.PHONY: help venv install test test-unit test-integration test-rules lint \
        broker-up broker-down broker-status broker-reset demo bench clean distclean

help:
	@echo "targets: install test test-unit test-integration test-rules lint"
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

test: $(STAMP)
	$(PYTEST) -q tests $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-rules

test-unit: $(STAMP)
	$(PYTEST) -q tests/unit tests/agents $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(PYTEST) -q tests/integration $(PYTEST_ARGS)

# Hook for Prometheus rules: checks and unit-tests them with promtool once
# deploy/prometheus exists; a no-op before that.
test-rules:
ifeq ($(wildcard deploy/prometheus),)
	@echo "test-rules: no deploy/prometheus yet, nothing to test"
else
	@command -v $(PROMTOOL) >/dev/null || { echo "test-rules: $(PROMTOOL) not found (apt-get install prometheus)" >&2; exit 1; }
	$(if $(PROM_RULES),$(PROMTOOL) check rules $(PROM_RULES),@echo "test-rules: no rule files")
	$(if $(PROM_TESTS),$(PROMTOOL) test rules $(PROM_TESTS),@echo "test-rules: no rule tests")
endif

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
