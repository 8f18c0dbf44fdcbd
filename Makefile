# loyaltysms — `make run` to start it, `make test` to test it. Nothing else needs installing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The browser tests drive Debian's chromium and inject axe-core from the npm registry.
CHROMIUM := /usr/bin/chromium
AXE := node_modules/axe-core/axe.min.js
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)

.PHONY: run test chaos screenshots lint fmt stop status migrate seed bench bench-orders bench-expiry bench-stop bench-dispatch bench-segments bench-campaigns bench-scan bench-callbacks bench-keyset bench-noisy lock clean

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.lock
	@touch $(STAMP)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium fonts-dejavu-core

$(AXE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(AXE)

## run: set up (virtualenv, dependencies, migrations, demo data) and serve on http://localhost:$${PORT:-8000}
run: $(STAMP)
	$(PY) -m loyaltysms.embedded run -- $(PY) manage.py serve

## test: set up the same way (and Debian's chromium for the browser tests), lint, run every test
test: $(STAMP) $(CHROMIUM) $(AXE) lint
	$(PY) -m loyaltysms.embedded run -- $(PY) -m pytest $(PYTEST_ARGS)

## chaos: fault tests (chaos/): a campaign sent by Celery workers killed and restarted mid-way
chaos: $(STAMP)
	DJANGO_SETTINGS_MODULE=loyaltysms.settings $(PY) -m pytest chaos -p no:cacheprovider -p no:django -s $(PYTEST_ARGS)

## screenshots: the README's pictures, taken by the browser tests (docs/screenshots/)
screenshots: $(STAMP) $(CHROMIUM) $(AXE)
	SCREENSHOTS=1 $(PY) -m loyaltysms.embedded run -- $(PY) -m pytest -q tests/browser

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## stop: stop the embedded PostgreSQL and Redis (make run stops them on exit)
stop: $(STAMP)
	$(PY) -m loyaltysms.embedded stop

status: $(STAMP)
	$(PY) -m loyaltysms.embedded status

migrate: $(STAMP)
	$(PY) manage.py migrate

seed: $(STAMP)
	$(PY) manage.py seed_demo

## bench: every benchmark in bench/ (each measures its baseline in the same run), then bench/RESULTS.md
bench: $(STAMP)
	$(PY) -m loyaltysms.embedded run -- $(PY) bench/results.py $(BENCH_ARGS)

bench-orders: $(STAMP)
	$(PY) -m loyaltysms.embedded run -- $(PY) bench/bench_order_ingest.py $(BENCH_ARGS)

bench-expiry: $(STAMP)
	$(PY) -m loyaltysms.embedded run -- $(PY) bench/bench_expiry.py $(BENCH_ARGS)

bench-stop: $(STAMP)
	$(PY) -m loyaltysms.embedded run -- $(PY) bench/bench_stop_webhook.py $(BENCH_ARGS)

bench-dispatch: $(STAMP)
	$(PY) -m loyaltysms.embedded run -- $(PY) bench/bench_dispatch_rate.py $(BENCH_ARGS)

bench-segments: $(STAMP)
	$(PY) -m loyaltysms.embedded run -- $(PY) bench/bench_segment_count.py $(BENCH_ARGS)

bench-campaigns: $(STAMP)
	$(PY) -m loyaltysms.embedded run -- $(PY) bench/bench_campaign_fanout.py $(BENCH_ARGS)

bench-scan: $(STAMP)
	$(PY) -m loyaltysms.embedded run -- $(PY) bench/bench_daily_scan.py $(BENCH_ARGS)

bench-callbacks: $(STAMP)
	$(PY) -m loyaltysms.embedded run -- $(PY) bench/bench_status_callback.py $(BENCH_ARGS)

bench-keyset: $(STAMP)
	$(PY) -m loyaltysms.embedded run -- $(PY) bench/bench_keyset_page.py $(BENCH_ARGS)

bench-noisy: $(STAMP)
	$(PY) -m loyaltysms.embedded run -- $(PY) bench/bench_noisy_neighbour.py $(BENCH_ARGS)

# Prints pyproject's runtime dependencies, or an optional group's.
define DEPS
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
group = sys.argv[1]
print("\n".join(project["dependencies"] if group == "dependencies" else project["optional-dependencies"][group]))
endef
export DEPS

## lock: re-pin requirements*.lock from pyproject.toml in a clean virtualenv
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/python -c "$$DEPS" dependencies > .lock-venv/runtime.txt
	.lock-venv/bin/python -c "$$DEPS" dev > .lock-venv/dev.txt
	.lock-venv/bin/pip install --quiet -r .lock-venv/runtime.txt
	.lock-venv/bin/pip freeze > requirements.lock
	.lock-venv/bin/pip install --quiet -r .lock-venv/dev.txt
	( echo "-r requirements.lock"; .lock-venv/bin/pip freeze | grep -vxFf requirements.lock ) > requirements-dev.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .hypothesis staticfiles
