#!/usr/bin/env bash
# `make test`: lint, then the whole suite. pytest's exit code 5 (no tests collected) fails the run.
set -uo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ruff check . || exit 1
python -m pytest --durations=15 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
