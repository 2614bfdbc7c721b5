# Every target bootstraps .venv itself: a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint unit bench torture docs docs-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: collect real process samples of this host into the default store.
demo: install
	$(BIN)/telelake collect --samples 3 --interval 1
	$(BIN)/telelake report
	$(BIN)/telelake redact scan --quiet

lint: install
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)
	$(BIN)/mypy src

## Tests run on every core (pytest-xdist; an idle worker takes tests from a busy one).
## TESTFLAGS=-n0 runs them in one process.
unit: install
	$(BIN)/python -m pytest -n auto --dist worksteal $(TESTFLAGS)

test: lint unit docs-check

bench: install
	$(BIN)/python -m bench

## kill -9 torture: 200 crashes of a writer; fails on any lost or doubled row (~4 min).
## Then 30 rounds of crashed writers whose WAL segments are damaged (flips, zeroed spans).
torture: install
	$(BIN)/python tests/torture.py --kills 200 --damage 30

docs: install
	$(BIN)/python -m telelake.clidoc > docs/cli.md

docs-check: install
	$(BIN)/python -m telelake.clidoc | diff -u docs/cli.md - || \
	  (echo "docs/cli.md is stale: run 'make docs'" && exit 1)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
