# Two commands for a fresh machine: `make demo` runs the platform, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PACKAGES := foundation ioc streams producers consumers alerts

.PHONY: demo test test-unit lint format clean timescaledb

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

# TimescaleDB into the venv's embedded PostgreSQL from a build of it for that PostgreSQL
# (README: "TimescaleDB in the embedded PostgreSQL"); CI takes the one next to the repository.
TIMESCALEDB_BUILD ?= ../shared/timescaledb
timescaledb: $(VENV)/.installed
	$(TIMESCALEDB_BUILD)/install "$$($(BIN)/python -c 'from ioc.embedded.postgres import postgres_bin_dir; print(postgres_bin_dir().parent)')"

demo: $(VENV)/.installed
	$(BIN)/ioc up

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-unit: $(VENV)/.installed-dev
	$(BIN)/python -m pytest tests/unit

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/mypy --check-untyped-defs --allow-untyped-defs --allow-incomplete-defs tests $(wildcard bench/*.py)

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
