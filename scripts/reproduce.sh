#!/usr/bin/env bash
# `make reproduce VERSION=<v>`: restore version v's training inputs through DVC (from the DVC remote on
# the registry's S3), retrain it, and print `weights sha256 match|mismatch` with the metrics side by side.
# S3: your environment (README "Your own S3"), else the local server `make run` left in .run/demo/s3.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
if [ -z "${AWS_ACCESS_KEY_ID:-}" ] && [ -f "$ROOT/.run/demo/s3/credentials.json" ]; then
  port="${FRESHREC_DEMO_S3_PORT:-8333}"
  python -m tasks.s3 start --state-dir "$ROOT/.run/demo/s3" --port "$port" >/dev/null
  trap 'python -m tasks.s3 stop --state-dir "$ROOT/.run/demo/s3" --port "$port"' EXIT
  eval "$(python -m tasks.s3 env --state-dir "$ROOT/.run/demo/s3" --port "$port")"
  export FRESHREC_PARAMS="${FRESHREC_PARAMS:-$ROOT/.run/demo/params.yaml}"
fi
python -m tasks.versioning reproduce --version "$1"
