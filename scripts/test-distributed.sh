#!/usr/bin/env bash
# `make test-distributed`: freshrec on Airflow's CeleryExecutor with real PostgreSQL and Redis servers,
# two Celery workers (queues `default` and `gpu`) with their own empty disks, SeaweedFS as the only shared
# state (tests/distributed). The servers come from Debian packages, installed here if missing; the test
# starts them on 127.0.0.1 and stops them by PID.
set -uo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
for dir in /usr/lib/postgresql/*/bin; do [ -d "$dir" ] && PATH="$PATH:$dir"; done
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v initdb >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "need ${missing[*]} (Debian packages): sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]} (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || exit 1
  for dir in /usr/lib/postgresql/*/bin; do [ -d "$dir" ] && PATH="$PATH:$dir"; done
fi
export PATH
FRESHREC_TEST_DISTRIBUTED=1 python -m pytest -s -p no:cacheprovider tests/distributed "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
