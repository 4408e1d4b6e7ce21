#!/usr/bin/env bash
# `make test-distributed`: freshrec on Airflow's CeleryExecutor with real PostgreSQL and Redis servers,
# two Celery workers (queues `default` and `gpu`) with their own empty disks, SeaweedFS as the only shared
# state (tests/distributed). The servers come from Debian packages, installed here if missing; the test
# starts them on 127.0.0.1 and stops them by PID.
set -uo pipefail
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/testlib.sh"
cd "$ROOT"
for dir in /usr/lib/postgresql/*/bin; do [ -d "$dir" ] && PATH="$PATH:$dir"; done
need_debian redis-server redis-server initdb postgresql || exit 1
for dir in /usr/lib/postgresql/*/bin; do [ -d "$dir" ] && PATH="$PATH:$dir"; done
export PATH
# the two stacks (LocalExecutor, Celery) run at once, one pytest-xdist worker each: 9.6 min instead of 11-12.6
FRESHREC_TEST_DISTRIBUTED=1 run_pytest -n 2 --dist load -rA -p no:cacheprovider tests/distributed "$@"
