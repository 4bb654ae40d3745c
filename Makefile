# The two commands of the README: `make demo` and `make test`. Both set up what they need.
VENV   := .venv
PYTHON ?= python3
BIN    := $(VENV)/bin

.PHONY: demo test unit lint bench images host-tools clean

$(BIN)/farm: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,inspect]'
	@touch $@

host-tools:
	@scripts/ensure-host-tools

images: $(BIN)/farm host-tools
	$(BIN)/farm images build

demo: $(BIN)/farm host-tools
	$(BIN)/farm images build shutdown-script
	$(BIN)/farm demo

lint: $(BIN)/farm
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint images
	url="$${FARM_TEST_POSTGRES_URL:-}"; [ -n "$$url" ] || url=$$(scripts/ensure-postgres) || exit 1; \
	FARM_TEST_POSTGRES_URL="$$url" $(BIN)/pytest

# Schemathesis over the API with every check (tests/test_fuzz_api.py), with many more cases
# than the suite's run and a new seed each time: FARM_FUZZ_EXAMPLES per operation and phase.
.PHONY: fuzz
fuzz: $(BIN)/farm
	url="$${FARM_TEST_POSTGRES_URL:-}"; [ -n "$$url" ] || url=$$(scripts/ensure-postgres) || exit 1; \
	FARM_TEST_POSTGRES_URL="$$url" FARM_FUZZ_EXAMPLES=$${FARM_FUZZ_EXAMPLES:-500} FARM_FUZZ_SEED= \
	$(BIN)/pytest -q -s tests/test_fuzz_api.py

# The fast tier: the loop, scoring, the store and the queue over the in-memory sandbox and
# SQLite; no engine (DOCKER_HOST points nowhere, so a test that reaches for it fails) and no
# Postgres. Under a minute; `make test` runs all of it again beside the real-engine suite.
UNIT := tests/test_memory_tier.py tests/test_host_reading.py tests/test_diff.py tests/test_kinds.py tests/test_verdict.py \
	tests/test_specs.py tests/test_store.py tests/test_queue.py tests/test_cms.py \
	tests/test_accounting.py tests/test_cost_cap.py tests/test_detectors.py tests/test_hardening.py

unit: lint
	DOCKER_HOST=unix:///nonexistent FARM_TEST_POSTGRES_URL= $(BIN)/pytest -q \
		-m "not engine and not postgres" $(UNIT)

bench: images
	$(BIN)/python bench/bench_sandbox.py --rounds 5
	$(BIN)/python bench/bench_campaign.py
	$(BIN)/python bench/bench_model_bound.py

clean:
	$(BIN)/farm sandbox reap
	rm -rf $(VENV) farm.db

# `docker compose up`: Postgres, migrations, the API and a worker; the demo campaign unless
# FARM_CAMPAIGN_FILE says otherwise (docker-compose.yml). compose-prepare makes what an offline
# machine lacks (debian:bookworm-slim, a wheelhouse); `make up` uses Compose v2 when installed,
# else v1 (docker-compose).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
# The stack refuses to start without a token and passwords; FARM_DEMO=1 is the explicit demo,
# with the public values of images/compose/demo.env (yours, when set, still win).
COMPOSE_ENV := $(if $(filter 1,$(FARM_DEMO)),--env-file images/compose/demo.env)

.PHONY: compose-prepare up down

compose-prepare: $(BIN)/farm host-tools
	scripts/compose-prepare

up: compose-prepare
	$(COMPOSE) $(COMPOSE_ENV) up --build

down:
	$(COMPOSE) $(COMPOSE_ENV) down
