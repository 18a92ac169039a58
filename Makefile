# One entry point for students, instructors and maintainers.
# Needs only Python 3.11+ and make: the first target that needs tools builds .venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS := course,test

# nbgrader and Jupyter start helper executables (alembic, kernels) found on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

# System packages the tests use, as program:Debian-package. `make test` installs the missing
# ones where it can (root with apt-get); elsewhere their tests are reported as not run.
SYSTEM_PACKAGES := bwrap:bubblewrap chromium:chromium
# `make system-packages APT_GET="echo apt-get"` shows what would be installed.
APT_GET ?= apt-get

.PHONY: help setup system-packages test test-fast lint demo lab release site bench perf-doc clean

help:
	@echo "make demo     set up, then grade the bundled sample submissions (the main job)"
	@echo "make test     set up, then run ruff, unit tests, doctests and notebook tests"
	@echo "              (as root with apt-get, first installs bubblewrap and chromium if missing)"
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

# Never fails: without root, apt-get or a network, the tests needing a package are skipped
# and named in one line at the end of the test run.
system-packages:
	@missing=; for pair in $(SYSTEM_PACKAGES); do \
	    command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	    echo "note: not installing$$missing (needs root and apt-get); their tests will not run"; \
	    exit 0; \
	fi; \
	echo "installing$$missing with apt-get"; \
	export DEBIAN_FRONTEND=noninteractive; \
	{ $(APT_GET) update -qq && $(APT_GET) install -y -qq$$missing; } \
	    || echo "note: could not install$$missing; their tests will not run"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# Test files run in parallel, one worker process per core, at most 4 (each grading test runs
# workers of its own); `make test TEST_WORKERS=0` runs them in this process, one at a time.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ "$$n" -gt 4 ] && n=4; echo $$n)

test: setup lint system-packages
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

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
