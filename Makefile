# One entry point for students, instructors and maintainers.
# Needs only Python 3.11+ and make: the first target that needs tools builds .venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS := course,test

# nbgrader and Jupyter start helper executables (alembic, kernels) found on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup test test-fast lint demo lab release site bench perf-doc clean

help:
	@echo "make demo     set up, then grade the bundled sample submissions (the main job)"
	@echo "make test     set up, then run ruff, unit tests, doctests and notebook tests"
	@echo "make lab      JupyterLab on course/ (the student notebooks)"
	@echo "make release  regenerate course/ from solutions/ with nbgrader"
	@echo "make site     the course web site in build/site/ (static, reads offline)"
	@echo "make lint     ruff, and mypy on the reference math"
	@echo "make bench    run the benchmarks in benchmarks/ (each records its run)"
	@echo "make perf-doc write docs/performance.md from the benchmarks' records"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest tests lossutils -m "not notebooks and not grading"

demo: setup
	$(BIN)/lossutils demo

lab: setup
	$(BIN)/jupyter lab course/

release: setup
	$(BIN)/lossutils release

site: setup
	$(BIN)/python -m lossutils.site --out build/site

bench: setup
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS),bench]'
	$(BIN)/python benchmarks/bench_lossutils.py
	$(BIN)/python benchmarks/bench_checks.py
	$(BIN)/python benchmarks/bench_notebooks.py
	$(BIN)/python benchmarks/bench_grading.py

perf-doc:
	$(PYTHON) benchmarks/render.py

clean:
	rm -rf $(VENV) demo-output grading-work build .pytest_cache .ruff_cache .hypothesis
