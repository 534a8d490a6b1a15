# SmartStart Core. `make run` and `make test` bootstrap everything they need into .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TS     := clients/typescript
TS_STAMP := $(TS)/node_modules/.installed

.PHONY: run test ts-test gen check-gen lint typecheck buf bench clean release-image

# The client package (generated stubs + SDK) first: the server depends on it by name.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./clients/python -e '.[dev]'
	touch $(STAMP)

# The TypeScript client's packages, exactly as package-lock.json pins them (Node >= 20, npm).
$(TS_STAMP): $(TS)/package.json $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund
	touch $(TS_STAMP)

## Start the server; with DATABASE_URL unset it runs an embedded PostgreSQL under .data/.
## A development JWT secret is set unless you configure one (see README, Configuration).
run: export SMARTSTART_JWT_DEV_SECRET ?= smartstart-dev-only-not-for-production
run: $(STAMP)
	$(BIN)/smartstart serve

## Run the test suite (embedded PostgreSQL, or the server DATABASE_URL names).
test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

## The TypeScript client's test (node --test) against `smartstart serve` on an embedded PostgreSQL.
ts-test: $(STAMP) $(TS_STAMP)
	cd $(TS) && npm test

## Regenerate stubs (Python, TypeScript) and the descriptor set from proto/.
gen: $(STAMP) $(TS_STAMP)
	PYTHON=$(PY) bash scripts/gen_protos.sh

## Fail when the committed generated code differs from a fresh generation.
check-gen: gen
	git diff --exit-code -- clients/ || (echo "generated code is stale: run make gen and commit" && exit 1)
	test -z "$$(git status --porcelain -- clients/)" || (git status --porcelain -- clients/; echo "untracked generated files" && exit 1)

lint: $(STAMP)
	$(BIN)/ruff check server tests bench migrations scripts clients/python
	$(BIN)/ruff format --check server tests bench migrations scripts clients/python

typecheck: $(STAMP)
	$(BIN)/mypy

buf: $(STAMP)
	$(PY) scripts/protodeps.py .build/protodeps
	$(BIN)/buf lint
	$(BIN)/buf format proto -d --exit-code
	$(BIN)/buf breaking proto --against proto/released.binpb --exclude-imports

## Record the current API as the released image `buf breaking` compares against.
release-image: $(STAMP)
	$(PY) scripts/protodeps.py .build/protodeps
	$(BIN)/buf build proto -o proto/released.binpb

## Benchmarks (QUICK=1 for a run under a minute; WORKERS=N sets SMARTSTART_WORKERS=N for the
## server, default 0 = one process per core; BENCH_ARGS="--json-out bench.json" etc.).
bench: $(STAMP)
	@$(PY) -m bench $(if $(QUICK),--quick,) $(if $(WORKERS),--workers $(WORKERS),) $(BENCH_ARGS)

clean:
	rm -rf .build .pytest_cache .mypy_cache .ruff_cache
