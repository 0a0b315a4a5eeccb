# icp-scorer: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_SECONDS ?= 0
export DEMO_SECONDS
# Test processes for `make test` (pytest-xdist, a test file to a process; each
# starts its own broker). 1 runs the suite in one process.
TEST_PROCESSES ?= 2

.DEFAULT_GOAL := help
.PHONY: help setup tools test test-cluster lint format demo kafka-up kafka-down bench bench-engine bench-lifecycle bench-expiry bench-route bench-collect schemas clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The compiled core (setup.py) is rebuilt whenever one of its sources changes.
CORE_SOURCES := $(addsuffix .py,$(subst .,/,$(shell sed -n 's/^    "\(scorer\.[a-z_.]*\)",$$/\1/p' scorer/native.py))) $(wildcard scorer/*.pxd scorer/*/*.pxd)

$(STAMP): pyproject.toml setup.py scorer/native.py $(CORE_SOURCES)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python >= 3.11 is required ($(PYTHON) is older)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench,demo]'
	@$(BIN)/python -c 'import sys; from scorer import native; sys.exit(native.main())'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install the package with its dev extras

tools: ## install the tools the tests run (promtool, prometheus, kcat, chromium) if missing
	@bash deploy/local/tools.sh

test: setup tools ## run the test suite (starts its own Kafka broker), then the unit tests in pure Python
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile
	SCORER_PURE_PYTHON=1 $(BIN)/pytest -n $(TEST_PROCESSES) -q tests/unit

test-cluster: setup ## only the three-node cluster tests (failover, ACLs), printing their tables (~5 min)
	$(BIN)/pytest -s tests/cluster

lint: setup ## ruff, formatting and mypy --strict
	$(BIN)/ruff check scorer tests bench setup.py
	$(BIN)/ruff format --check scorer tests bench setup.py
	$(BIN)/mypy

format: setup ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix scorer tests bench setup.py
	$(BIN)/ruff format scorer tests bench setup.py

demo: setup ## start Kafka, show hot accounts arriving live (DEMO_SECONDS=N stops by itself)
	@bash deploy/local/demo.sh $(BIN)/scorer

kafka-up: ## start the local Kafka broker on KAFKA_PORT (default 9092)
	bash deploy/local/kafka.sh up

kafka-down: ## stop the local Kafka broker
	bash deploy/local/kafka.sh down

bench: setup ## streaming benchmark: ceiling, floor and scorer arms on a local broker (~7 min)
	@bash deploy/local/with-kafka.sh $(BIN)/python -m bench.stream_bench

bench-engine: setup ## the scoring engine alone against two baselines (no Kafka)
	$(BIN)/python -m bench.engine_bench

bench-lifecycle: setup ## backtest 1M events x 2 ICPs and derive over 100k accounts (no Kafka)
	$(BIN)/python -m bench.lifecycle_bench

bench-expiry: setup ## account expiry over a year of 1M domains: scorer score and a worker, plot (~15 min)
	@bash deploy/local/with-kafka.sh $(BIN)/python -m bench.expiry_bench

bench-route: setup ## scorer route to a 50 ms webhook: alerts/s, latency at 100/s, memory (~15 min)
	@bash deploy/local/with-kafka.sh $(BIN)/python -m bench.route_bench

bench-collect: setup ## scorer collect vs a raw aiohttp ceiling: Segment calls/s, p99 at half rate, RSS (~2 min)
	@bash deploy/local/with-kafka.sh $(BIN)/python -m bench.collect_bench

schemas: setup ## regenerate schemas/ from scorer/models.py
	$(BIN)/scorer schemas

clean: ## remove the virtualenv, caches and local broker data
	-bash deploy/local/kafka.sh down
	rm -rf $(VENV) .kafka .pytest_cache .mypy_cache .ruff_cache .hypothesis .scorer-data
	find scorer \( -name '*.so' -o -name '*.c' \) -delete
	rm -f scorer/_core_sources.json
	rm -rf build
