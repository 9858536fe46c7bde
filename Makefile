# Two commands a newcomer needs:  `make run`  and  `make test`  (see README.md).
PYTHON ?= python3
VENV   ?= .venv
DATA_DIR ?= $(HOME)/.oa-node
RELAY_PORT ?= 7447
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench setup clean

$(STAMP): pyproject.toml setup.py
	@command -v $(PYTHON) >/dev/null || { echo "need python3 >= 3.11"; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv python3-dev; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

## Set up, then run the whole marketplace on one node: relay, ledger wallet (a buyer and a
## provider account, the buyer funded), provider (when Docker is reachable) and buyer, from
## a config written into $(DATA_DIR) the first time (scripts/run_local.py says how).
run: $(STAMP)
	@$(PY) scripts/run_local.py $(DATA_DIR) --port $(RELAY_PORT)

## Install what the tests need (Debian packages, Docker, PostgreSQL) and run the whole suite.
test: $(STAMP)
	@eval "$$(bash .ci/services)" && \
	  $(PY) -m ruff check . && \
	  $(VENV)/bin/oa-node sandbox build-image && \
	  $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

BENCHMARKS := crypto relay sandbox marketplace payments frost cli

## Run every benchmark (each prints medians and ratios against a reference run beside it).
bench: $(STAMP)
	@for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py"; $(PY) benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

## Regenerate the documented example config from the loaded plugins' declarations.
node.toml.example: $(STAMP) $(wildcard oa_node/*.py plugins/*/*.py)
	@{ echo "# oa-node example config: every key of every built-in plugin, with its default."; \
	   echo "# Regenerate with \`make node.toml.example\` (a test checks it is current)."; \
	   echo "#"; $(VENV)/bin/oa-node config example; } > $@.tmp && mv $@.tmp $@
