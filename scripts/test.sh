#!/usr/bin/env bash
# `make test`: lint, then the whole suite, on every core. pytest's exit code 5 (no tests collected) fails the run.
set -uo pipefail
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/testlib.sh"
cd "$ROOT"
ruff check . || exit 1
# one pytest worker per core (pytest-xdist): each has its own SeaweedFS, Airflow home and bootstrap image
run_pytest -n "${FRESHREC_TEST_WORKERS:-auto}" --dist load --durations=15 "$@"
