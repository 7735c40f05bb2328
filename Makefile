# Leadstream developer targets. Everything installs into .venv; nothing else is needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
WHEELS ?= .cache/wheels
PYTEST_ARGS ?=

.PHONY: venv kafka schemas test test-unit test-integration demo lint typecheck drills bench bench-smoke bench-own clean

# The pinned distributions (and the build backend) are downloaded into a wheelhouse first and
# installed from it: tests/packaging installs the package without the [local] extra from it too.
$(BIN)/leadstream: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip download --quiet --dest $(WHEELS) 'setuptools>=77' wheel '.[test,dev,local]'
	$(BIN)/pip install --quiet --no-index --find-links $(WHEELS) -e '.[test,dev,local]'
	touch $@

venv: $(BIN)/leadstream kafka ## create .venv, install Leadstream with the local stack, test and dev tools, fetch Kafka

kafka: $(BIN)/leadstream ## fetch Apache Kafka (pinned in streams/local/kafka_dist.py) with Maven into .cache/
	$(BIN)/python -m streams.local.broker fetch

schemas: ## copy schemas/*.avsc into the package (streams/serde/schemas/), which ships them; after any .avsc edit
	rm -f streams/serde/schemas/*.avsc
	cp schemas/*.avsc streams/serde/schemas/

test: venv ## the default test run: unit, agent and integration tiers on one real broker; coverage floors
	$(BIN)/pytest -m "not slow" --cov --cov-report=term:skip-covered $(PYTEST_ARGS)
	$(BIN)/python -m tests.coverage_floor

test-unit: venv
	$(BIN)/pytest tests/unit tests/agents $(PYTEST_ARGS)

test-integration: venv
	$(BIN)/pytest tests/integration -m "not slow" $(PYTEST_ARGS)

demo: venv ## local broker + registry + Events API sandbox + worker + sample traffic, then a summary
	$(BIN)/leadstream demo

drills: venv ## the failure drills at full size (fuzz 10,000 bad records, 10 kills, scale-out)
	DRILL_SCALE=full $(BIN)/pytest tests/drills -s -p no:cacheprovider $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check streams tests
	$(BIN)/ruff format --check streams tests

typecheck: venv
	$(BIN)/mypy

bench: venv ## benchmarks on Apache Kafka + sandbox (~20 min on 2 cores): issue 15 targets printed ok/MISSED, exit 1 only on a real failure; bench-results/bench.json
	$(BIN)/python -m benchmarks

bench-smoke: venv ## the same measurements at tiny sizes, one run each (< 3 min; CI): targets printed, never fail the run
	$(BIN)/python -m benchmarks --smoke

bench-own: venv ## Leadstream's own CPU per lead with no Faust and no Kafka (~30 s, no broker): the ceiling of the e2e ratio
	$(BIN)/python -m benchmarks.own_work

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache build *.egg-info
