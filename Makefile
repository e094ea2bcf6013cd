# The two commands of the README:  make demo  (set up + run the offline pipeline)
#                                  make test  (set up + run the test suite)
# Only Python >= 3.11 and pip are needed; everything goes into .venv from requirements.lock.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CORES ?= 2
PYTEST_ARGS ?=

.PHONY: setup demo test test-quick lint lock clean-results

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools>=77" wheel
	# torch first, then everything else without build isolation: sam2 ships as an sdist whose
	# isolated build would download a second multi-GB torch (SAM2_BUILD_CUDA=0: no CUDA extension).
	$(PIP) install -q -c requirements.lock torch torchvision
	SAM2_BUILD_CUDA=0 $(PIP) install -q --no-build-isolation -c requirements.lock -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/sartm pipeline demo --cores $(CORES)

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-quick: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	PATH=$(BIN):$$PATH $(BIN)/snakemake --lint
	$(BIN)/sartm pipeline dvc-yaml --check

# Regenerate the pinned lock file after changing pyproject.toml's dependencies.
lock: setup
	$(BIN)/uv pip compile pyproject.toml --extra dev -c lock-constraints.txt -o requirements.lock \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header

clean-results:
	rm -rf results mlflow.db mlartifacts .snakemake
