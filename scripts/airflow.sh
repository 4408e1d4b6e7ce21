#!/usr/bin/env bash
# `make airflow` / `make stop`: Airflow (API server + UI, scheduler, DAG processor, triggerer; LocalExecutor,
# metadata in a local PostgreSQL on 127.0.0.1:15432, never SQLite: the UI, the REST API and the CLI write at
# once) on http://127.0.0.1:8080 with freshrec's DAGs, and the local SeaweedFS S3 on 127.0.0.1:8333.
# The components are started one by one rather than with `airflow standalone`, so that the log
# servers (which bind every interface) can be skipped: with LocalExecutor logs are read from disk.
set -euo pipefail
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/testlib.sh"
cd "$ROOT"
RUN="$ROOT/.run"
PIDFILE="$RUN/airflow.pid"

start() {
  mkdir -p "$RUN" "$AIRFLOW_HOME"
  # our own users and passwords file (0600), so Airflow neither generates a password nor prints one to its log
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin"
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/passwords.json"
  [ -f "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" ] || python -c "
import json, os, secrets, pathlib
from tasks.common import write_secret
write_secret(pathlib.Path(os.environ['AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE']),
             json.dumps({'admin': secrets.token_urlsafe(18)}))"
  # the keys that sign UI/API tokens, shared by every component: generated once, 0600, never printed
  # (Airflow's own default is a 16-byte key, below what HS512 wants)
  [ -f "$AIRFLOW_HOME/secrets.env" ] || python -c "
import os, pathlib, secrets
from tasks.common import write_secret
write_secret(pathlib.Path(os.environ['AIRFLOW_HOME']) / 'secrets.env',
             f'export AIRFLOW__API_AUTH__JWT_SECRET={secrets.token_urlsafe(64)}\\n'
             f'export AIRFLOW__API__SECRET_KEY={secrets.token_urlsafe(32)}\\n')"
  source "$AIRFLOW_HOME/secrets.env"
  chmod 600 "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" 2>/dev/null || true
  for dir in /usr/lib/postgresql/*/bin; do [ -d "$dir" ] && PATH="$PATH:$dir"; done
  need_debian initdb postgresql || exit 1
  python -m tasks.postgres start
  eval "$(python -m tasks.postgres env)"
  python -m tasks.s3 start
  eval "$(python -m tasks.s3 env)"
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "Airflow is already running (pid $(cat "$PIDFILE")): http://127.0.0.1:8080"
  else
    airflow db migrate >"$RUN/airflow-migrate.log" 2>&1
    # its own process group, so `make stop` ends the scheduler, API server and workers with it
    setsid bash -c 'airflow api-server --host 127.0.0.1 --port 8080 & airflow scheduler --skip-serve-logs &
                    airflow dag-processor & airflow triggerer --skip-serve-logs & wait' \
      >"$RUN/airflow.log" 2>&1 < /dev/null &
    echo $! >"$PIDFILE"
    echo -n "waiting for the Airflow UI"
    for _ in $(seq 1 90); do
      curl -fsS -o /dev/null http://127.0.0.1:8080/api/v2/version 2>/dev/null && break
      echo -n "."; sleep 2
    done
    echo
    airflow dags reserialize >/dev/null 2>&1 || true
  fi
  echo "Airflow UI: http://127.0.0.1:8080  (log: .run/airflow.log)"
  echo "login: admin; the password is in ${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE#$ROOT/} (mode 600, never logged)"
  echo "in another shell: source scripts/env.sh && eval \"\$(scripts/airflow.sh env)\""
  echo "1. unpause and trigger freshrec_bootstrap (once); 2. unpause replay and daily, backfill replay days, e.g."
  echo "   airflow dags unpause freshrec_replay && airflow dags unpause freshrec_daily"
  echo "   airflow backfill create --dag-id freshrec_replay --from-date 1998-03-01 --to-date 1998-03-03"
  echo "   airflow backfill create --dag-id freshrec_daily  --from-date 1998-03-01 --to-date 1998-03-03 --max-active-runs 10"
  echo "3. approve under Browse > Required Actions.  Stop everything with: make stop"
  echo "   (optional: airflow dags unpause freshrec_store_gc, the object store's daily gc; docs/operations.md)"
}

stop() {
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
    echo "Airflow stopped"
  fi
  python -m tasks.s3 stop
  python -m tasks.postgres stop
}

# `eval "$(scripts/airflow.sh env)"`: what a shell needs to use `make airflow`'s Airflow from the CLI (its
# PostgreSQL and the local S3); the secrets go to stdout only, for eval, never to a log
env_exports() {
  python -m tasks.postgres env
  python -m tasks.s3 env
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  env) env_exports ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
