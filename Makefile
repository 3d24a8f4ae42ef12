# fairgate: the README's commands. `make serve` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fairgate-installed
PORT ?= 3000
WORKERS ?= 1

export BENTOML_DO_NOT_TRACK := true
export PYTHONUNBUFFERED := 1

.PHONY: install models serve test test-fast bench build clean

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

serve: models
	FAIRGATE_WORKERS=$(WORKERS) $(BIN)/bentoml serve service.service:Fairgate --port $(PORT) --host 0.0.0.0

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not server"

bench: models
	$(BIN)/python -m loadtests.bench

build: models
	$(BIN)/bentoml build .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache bench.json
