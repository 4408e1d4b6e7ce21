# Helpers for the test scripts (source after env.sh).

# _missing_debian CMD PKG [CMD PKG ...]: the packages of the commands not on PATH, on one line.
_missing_debian() {
  local out=()
  while [ $# -gt 1 ]; do command -v "$1" >/dev/null || out+=("$2"); shift 2; done
  echo "${out[*]}"
}

# need_debian CMD PKG [CMD PKG ...]: install the Debian package of each missing command (as root), or say how.
need_debian() {
  local missing lock="${FRESHREC_APT_LOCK:-/run/lock/freshrec-apt.lock}"
  missing=$(_missing_debian "$@")
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "need $missing (Debian packages): sudo apt-get install -y $missing" >&2
    return 1
  fi
  (  # one install at a time: CI runs two suites at once, and apt holds one lock
    flock -w 1200 9 || { echo "could not take $lock in 20 minutes" >&2; exit 1; }
    missing=$(_missing_debian "$@")  # the suite that held the lock may have installed them
    [ -z "$missing" ] && exit 0
    echo "installing $missing (Debian packages)"
    # shellcheck disable=SC2086  # one package a word
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  ) 9>"$lock"
}

# run_pytest ARGS...: pytest whose exit code 5 (no tests collected) is a failure.
run_pytest() {
  python -m pytest "$@"
  local rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    return 1
  fi
  return "$rc"
}
