# tablechain: `make demo` runs a local node on embedded defaults; `make test` runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint soak bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tablechain.platform.demo

test: $(STAMP)
	$(BIN)/ruff check tablechain tests bench
	$(BIN)/mypy
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(BIN)/python -m pytest -q -p no:cacheprovider; \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check tablechain tests bench
	$(BIN)/mypy

soak: $(STAMP)
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 TABLECHAIN_SOAK_SEEDS=10000 $(BIN)/python -m pytest -q -n 2 -p no:cacheprovider tests/ledger/test_consensus_sim.py -k soak
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 TABLECHAIN_CATCHUP_BLOCKS=10000 $(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e/test_cluster_catchup.py

clean:
	rm -rf $(VENV)
