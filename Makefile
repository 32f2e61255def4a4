# The two commands: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# Tests connect here and create their own database (test_crcr_<run id>) beside the others.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (each with its own database and redis-server).
TEST_WORKERS ?= 2
# Installs and starts what a new machine lacks for the tests (PostgreSQL, redis-server, curl,
# Chromium); `make test PROVISION=true` skips it (e.g. with TEST_DATABASE_URL elsewhere).
PROVISION ?= scripts/provision

.PHONY: demo demo-reset test test-fast lint venv clean screenshots

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@python=$$(scripts/find-python) || exit 1; \
	  echo "Using $$python ($$($$python --version))"; \
	  [ -x $(PY) ] || $$python -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) manage.py demo --port $(PORT) $(DEMO_ARGS)

# What the demo keeps between starts: the embedded SQLite database (allowlist, deliveries, the
# loaded history, the admin user), the HUD's chdb files with --clickhouse, collected static
# files. Its Redis is a fakeredis in memory, gone when the demo stops. The next `make demo`
# starts afresh (and loads a new history).
demo-reset:
	rm -rf crcr.sqlite3 crcr.sqlite3-wal crcr.sqlite3-shm crcr-chdb var/demo-chdb staticfiles

test: venv
	@$(PROVISION)
	@DATABASE_URL=$(TEST_DATABASE_URL) $(PY) scripts/check_services.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-fast: venv
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) -m pytest -m "not browser" $(PYTEST_ARGS)

# The README's screenshots: the demo in Chromium (tests/sandbox/test_demo.py), copied where
# the README shows them from.
screenshots: venv
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) -m pytest -q tests/sandbox/test_demo.py -k readme
	mkdir -p docs/screenshots && cp var/screenshots/demo-*.png docs/screenshots/

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/hadolint --failure-threshold info Dockerfile
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml

# demo-reset, and the venv and tools' caches too.
clean: demo-reset
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
