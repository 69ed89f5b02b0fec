# The two commands: `make run` and `make test`. Both bootstrap .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: venv run test test-mongodb bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	mkdir -p data
	FHIR_DATABASE=$${FHIR_DATABASE:-./data/fhir.db} $(BIN)/fhir-server serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The real-MongoDB suite and the contract suites on MongoDB; needs FHIR_TEST_MONGODB_URL
# and/or FHIR_TEST_MONGODB_SHARDED_URL (scripts/mongodb_topology.py starts both topologies).
test-mongodb: $(STAMP)
	$(BIN)/python -m pytest -k "mongodb" tests/real_mongodb tests/contract $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
