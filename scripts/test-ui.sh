#!/usr/bin/env bash
# `make test-ui`: the approver's path through the Airflow UI in headless Chromium (tests/ui): log in,
# trigger a day, open Required Actions and every evidence link, approve. Chromium comes from Debian
# (installed here if missing); the test starts Airflow and SeaweedFS on 127.0.0.1 and stops them by PID.
# Screenshots: .run/ui-screenshots/.
set -uo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "need chromium (Debian package): sudo apt-get install -y chromium" >&2
    exit 1
  fi
  echo "installing chromium (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || exit 1
fi
FRESHREC_TEST_UI=1 python -m pytest -s -p no:cacheprovider tests/ui "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
