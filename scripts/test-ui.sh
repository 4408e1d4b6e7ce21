#!/usr/bin/env bash
# `make test-ui`: the approver's path through the Airflow UI in headless Chromium (tests/ui): log in,
# trigger a day, open Required Actions and every evidence link, approve. Chromium comes from Debian
# (installed here if missing); the test starts Airflow and SeaweedFS on 127.0.0.1 and stops them by PID.
# Screenshots: .run/ui-screenshots/.
set -uo pipefail
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/testlib.sh"
cd "$ROOT"
for dir in /usr/lib/postgresql/*/bin; do [ -d "$dir" ] && PATH="$PATH:$dir"; done
need_debian chromium chromium initdb postgresql || exit 1
for dir in /usr/lib/postgresql/*/bin; do [ -d "$dir" ] && PATH="$PATH:$dir"; done
export PATH
# its own S3 ports: CI (.ci/run) runs it beside make test-distributed, whose SeaweedFS instances start at 18333
FRESHREC_TEST_S3_PORT="${FRESHREC_TEST_S3_PORT:-28333}" FRESHREC_TEST_UI=1 run_pytest -s -p no:cacheprovider tests/ui "$@"
