#!/usr/bin/env bash
# `make test`: lint, then the whole suite. pytest's exit code 5 (no tests collected) fails the run.
set -uo pipefail
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/testlib.sh"
cd "$ROOT"
ruff check . || exit 1
run_pytest --durations=15 "$@"
