# fairgate: the README's commands. `make serve` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fairgate-installed
PORT ?= 3000
WORKERS ?= 1
# Fleet-wide rate windows and alerts: `make serve REDIS_URL=redis://HOST:6379/0` (docs/fleet.md).
REDIS_URL ?= $(FAIRGATE_REDIS_URL)
# `make bench REDIS=1` adds a run with the windows in a private redis-server (or REDIS=redis://...).
REDIS ?=
# `make bench REDIS=1 REDIS_ROUNDS=4` pools 4 pairs of phases without/with Redis (about 90 s each).
REDIS_ROUNDS ?=
# The run's time budget (seconds): 540; with REDIS_ROUNDS the other phases plus about 200 s per pair;
# COMPARE_OPEN_RATE adds 360 (the open-loop rounds double the comparison).
BENCH_BUDGET ?= $(shell echo $$(( $(if $(REDIS_ROUNDS),600 + 200 * $(REDIS_ROUNDS),540) + $(if $(COMPARE_OPEN_RATE),360,0) )))
# `make bench COMPARE_GUARD=A,B` (and/or COMPARE_CLASSIFIER=A,B) runs both model variants side by side first.
COMPARE_GUARD ?=
COMPARE_CLASSIFIER ?=
# `make bench COMPARE_PROBE=0.05` serves the policy with the counterfactual probe at that sample
# and with it off, alternating saturation rounds in one run (docs/benchmark.md).
COMPARE_PROBE ?=
# `make bench COMPARE_SERVER_ENV="a:FAIRGATE_GUARD_TAG=old b:FAIRGATE_GUARD_TAG=new"` serves two
# servers that differ in those settings, alternating saturation rounds (docs/benchmark.md).
COMPARE_SERVER_ENV ?=
# `make bench COMPARE_SERVER_ENV=... COMPARE_OPEN_RATE=half` adds alternating open-loop rounds on both
# servers at that rate (req/s, or half the slower side's saturation) and pools each side's p50/p95/p99.
COMPARE_OPEN_RATE ?=

export BENTOML_DO_NOT_TRACK := true
export PYTHONUNBUFFERED := 1

.PHONY: install models serve test test-fast lint bench wheel build container clean

# torch first and pinned: a looser request pulls several GB of CUDA packages.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[train,test,load,deploy]"
	@touch $(STAMP)

install: $(STAMP)

# Build the default models (offline, `bundled` sources) only if the store lacks them.
models: $(STAMP)
	$(BIN)/fairgate build classifier --if-missing
	$(BIN)/fairgate build guard --if-missing

# `fairgate serve` checks the settings, keys, policy and models first (exit 2 naming the
# fix), then execs `bentoml serve fairgate.service.service:Fairgate`.
serve: models
	FAIRGATE_REDIS_URL=$(REDIS_URL) $(BIN)/fairgate serve --host 0.0.0.0 --port $(PORT) --workers $(WORKERS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Static checks: ruff over the tree, then mypy over the package `fairgate` (strict for
# fairgate.guardrails; config in pyproject.toml; tests/setup/typecheck.sh says why a script).
lint: $(STAMP)
	$(BIN)/ruff check .
	MYPY=$(BIN)/mypy bash tests/setup/typecheck.sh

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not server"

bench: models
	$(BIN)/python -m loadtests.bench $(if $(filter 1 yes true,$(REDIS)),--redis,$(if $(REDIS),--redis $(REDIS),)) \
		$(if $(COMPARE_GUARD),--compare-guard-tag $(COMPARE_GUARD),) $(if $(COMPARE_CLASSIFIER),--compare-classifier-tag $(COMPARE_CLASSIFIER),) \
		$(if $(COMPARE_PROBE),--compare-probe $(COMPARE_PROBE),) $(if $(REDIS_ROUNDS),--redis-rounds $(REDIS_ROUNDS),) \
		$(foreach side,$(COMPARE_SERVER_ENV),--compare-server-env '$(side)') \
		$(if $(COMPARE_OPEN_RATE),--compare-open-rate $(COMPARE_OPEN_RATE),) --budget $(BENCH_BUDGET)

# The bento installs the project from its wheel (bentofile.yaml): build it first, offline.
wheel: $(STAMP)
	rm -rf build/wheel build/lib build/bdist.*  # setuptools would reuse stale build/lib files
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation -w build/wheel .

build: models wheel
	$(BIN)/bentoml build .

# The bento as an OCI image (needs a Docker engine or another backend bentoml supports):
# `make container IMAGE=REGISTRY/fairgate:TAG`; deploy/compose.yaml runs fairgate:latest.
IMAGE ?= fairgate:latest
container: build
	$(BIN)/bentoml containerize fairgate:latest -t $(IMAGE)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache bench.json
