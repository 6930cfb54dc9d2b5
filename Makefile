# The two commands of the README: `make demo` and `make test`.
# Both create the virtual environment they need on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/jobtrail demo

lint: $(BIN)/.installed
	$(BIN)/ruff check domain adapters processors projections tests bench
	$(BIN)/ruff format --check domain adapters processors projections tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.append
	$(BIN)/python -m bench.submit
	$(BIN)/python -m bench.rebuild
	$(BIN)/python -m bench.worker
	$(BIN)/python -m bench.relay
	$(BIN)/python -m bench.replay

clean:
	rm -rf $(VENV) jobtrail.db jobtrail.db-wal jobtrail.db-shm
