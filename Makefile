# The two commands of the README: `make demo` and `make test`.
# Both create the virtual environment they need on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck-tree bench clean browser netns

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The Node.js verifier's pinned packages (tests/node), from its lockfile. Without npm the
# verifier's tests skip, or fail under CI (JOBTRAIL_REQUIRE_KAFKA=1).
NODE_DIR := tests/node
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(NODE_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
		echo "npm not found: the Node.js verifier's tests (tests/node) cannot run"; \
	fi

demo: $(BIN)/.installed
	$(BIN)/jobtrail demo

SOURCES := jobtrail domain adapters processors projections tests bench examples

lint: $(BIN)/.installed typecheck-tree
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy

# mypy cannot follow the editable install's import hook (python/mypy#13392): it checks a
# tree of links laid out as the installed package is (pyproject's package-dir).
typecheck-tree:
	rm -rf build/typecheck && mkdir -p build/typecheck/jobtrail
	for f in jobtrail/*; do ln -s "$$PWD/$$f" build/typecheck/$$f; done
	for d in domain adapters processors projections; do ln -s "$$PWD/$$d" build/typecheck/jobtrail/$$d; done

# Debian's headless Chromium for the dashboard's browser test (tests/integration/
# test_dashboard_browser.py), installed when missing where apt-get is (CI runs as root).
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
		apt-get install -y --no-install-recommends chromium chromium-driver \
		|| { apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver; }; \
	fi

# iproute2's `ip` for the network-partition test (tests/integration/test_partition.py), which
# makes its hosts as network namespaces; installed when missing where apt-get is.
netns:
	@if ! command -v ip >/dev/null && [ ! -x /usr/sbin/ip ] && command -v apt-get >/dev/null; then \
		apt-get install -y --no-install-recommends iproute2 \
		|| { apt-get update && apt-get install -y --no-install-recommends iproute2; }; \
	fi

test: lint $(NODE_DIR)/node_modules/.installed browser netns
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
