# media-pipeline: `make run` (the whole pipeline on this machine), `make test` (lint, types,
# tests), `make emulator` (the local AWS emulator alone) and `make deploy STAGE=...` (AWS, or
# the emulator when AWS_ENDPOINT_URL points at it).
# The functions run on Lambda's python3.13, and Chalice takes the runtime from the interpreter
# it runs under: .venv is always CPython 3.13, found as python3.13 on PATH or in pyenv.
PYTHON_VERSION := 3.13
PYTHON ?= $(shell bin/find-python $(PYTHON_VERSION))
STAGE  ?= dev
TENANT ?=
PARAMS ?=
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(PYTHON_VERSION)

.PHONY: install lint format types browser test run emulator bench soak fuzz deploy destroy package api-key cost clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON)" || { bin/find-python --help-install $(PYTHON_VERSION) >&2; exit 1; }
	@bin/find-python --is $(PYTHON_VERSION) $(PYTHON) || { echo "$(PYTHON) is not CPython $(PYTHON_VERSION)" >&2; exit 1; }
	@bin/find-python --is $(PYTHON_VERSION) $(BIN)/python || { echo "rebuilding $(VENV) with $(PYTHON)"; rm -rf $(VENV); }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'pip>=24,<26.3'  # chalice packages with pip and requires <26.3
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .  # media-pipeline, the CLI
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint infra/template.yaml

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

types: install
	$(BIN)/mypy

# The console's browser test drives Debian's chromium and chromedriver, installed when missing.
browser:
	bin/ensure-chromium

# Test modules are spread over TEST_WORKERS processes (pytest-xdist), a module's tests in one.
TEST_WORKERS ?= 2

test: lint types browser
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

run: install
	$(BIN)/python -m devstack.run

emulator: install
	$(BIN)/python -m devstack.run --emulator

bench: install
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.coldstart
	$(BIN)/python -m bench.memory

soak: install
	$(BIN)/python -m bench.soak

fuzz: install
	mkdir -p out/fuzz-corpus
	$(BIN)/python -m fuzz.engine -max_total_time=$(or $(FUZZ_SECONDS),600) -artifact_prefix=out/ out/fuzz-corpus
	FUZZ_EXAMPLES=5000 $(BIN)/pytest tests/test_fuzz.py -q -p no:cacheprovider

deploy: install
	$(BIN)/python -m infra.deploy deploy --stage $(STAGE) $(foreach p,$(PARAMS),--parameter $(p))

destroy: install
	$(BIN)/python -m infra.deploy destroy --stage $(STAGE)

package: install
	$(BIN)/python -m infra.package --stage $(STAGE)

api-key: install
	@test -n "$(TENANT)" || { echo "usage: make api-key STAGE=dev TENANT=acme" >&2; exit 2; }
	$(BIN)/python -m infra.keys create --stage $(STAGE) --tenant $(TENANT)

cost: install
	$(BIN)/python -m infra.cost

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
