#!/usr/bin/env bash
# `make serve`: the recommendation service (docs/serving.md) on http://127.0.0.1:8000, following the
# champion that `make run` left in .run/demo: starts that state's SeaweedFS if it is not running (and
# stops it again on exit), one worker per core. Extra flags go to `python -m serve` (SERVE_FLAGS).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
DEMO="$ROOT/.run/demo"
S3_PORT="${FRESHREC_DEMO_S3_PORT:-8333}"
if [ ! -d "$DEMO/s3" ]; then
  echo "no champion to serve yet: run \`make run\` first (it leaves its state in .run/demo)" >&2
  exit 1
fi
export FRESHREC_PARAMS="$DEMO/params.yaml"
if [ "$(python -m tasks.s3 status --state-dir "$DEMO/s3" --port "$S3_PORT")" != running ]; then
  python -m tasks.s3 start --state-dir "$DEMO/s3" --port "$S3_PORT"
  trap 'python -m tasks.s3 stop --state-dir "$DEMO/s3" --port "$S3_PORT"' EXIT INT TERM
fi
eval "$(python -m tasks.s3 env --state-dir "$DEMO/s3" --port "$S3_PORT")"
# shellcheck disable=SC2086  # SERVE_FLAGS is a list of flags
python -m serve --port "${SERVE_PORT:-8000}" --workers "$(nproc)" ${SERVE_FLAGS:-}
