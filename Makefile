# Two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-integration test-contract test-e2e test-browser lint schemas bench clean

LINT_PATHS := encompass workers tests bench
TYPED_PATHS := encompass workers tests bench

# The inbox page's script: JavaScript dependencies pinned in web/package-lock.json, bundled
# by esbuild into encompass/web/static/inbox.js, which ships in the Python package.
$(STAMP): pyproject.toml web/package-lock.json web/src/inbox.js
	@command -v npm >/dev/null 2>&1 || { echo "npm is needed to build the inbox page's script: install Node.js 18 or later with npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	npm ci --prefix web --ignore-scripts --no-audit --no-fund --loglevel=error
	npm run --prefix web --silent build
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/encompass demo $(DEMO_ARGS)

# The same checks run by .pre-commit-config.yaml.
lint: $(STAMP)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy $(TYPED_PATHS)

test: lint
	$(BIN)/pytest -q

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest -q tests/integration tests/contract

test-contract: $(STAMP)
	$(BIN)/pytest -q tests/contract

test-e2e: $(STAMP)
	$(BIN)/pytest -q tests/e2e

test-browser: $(STAMP)
	$(BIN)/pytest -q tests/browser

schemas: $(STAMP)
	$(BIN)/python -m encompass.schema_files schemas

bench: $(STAMP)
	$(BIN)/python -m bench.fair_bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache encompass.db
