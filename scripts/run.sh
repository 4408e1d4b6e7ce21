#!/usr/bin/env bash
# `make run`: the main job on the embedded default, in its own state under .run/demo/ (wiped first,
# so every `make run` shows the same story): local SeaweedFS on 127.0.0.1, bootstrap champion on the
# ML-100K warm-up window, then the real daily DAG for the next 3 days with auto-approve, then the
# per-day table and a check that serving can load the champion the pointer names.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
DEMO="$ROOT/.run/demo"
rm -rf "$DEMO"
mkdir -p "$DEMO"
export FRESHREC_DATA="$DEMO/data" AIRFLOW_HOME="$DEMO/airflow"
export FRESHREC_PARAMS="$DEMO/params.yaml"
sed "s#landing_dir: data/landing#landing_dir: $DEMO/landing#" params.yaml > "$FRESHREC_PARAMS"
S3_PORT="${FRESHREC_DEMO_S3_PORT:-8333}"

t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }

python -m tasks.s3 start --state-dir "$DEMO/s3" --port "$S3_PORT"
trap 'python -m tasks.s3 stop --state-dir "$DEMO/s3" --port "$S3_PORT"' EXIT INT TERM
eval "$(python -m tasks.s3 env --state-dir "$DEMO/s3" --port "$S3_PORT")"

stamp "airflow db migrate"
airflow db migrate >"$DEMO/airflow-migrate.log" 2>&1

stamp "bootstrap: champion on the ML-100K warm-up window"
python -m tasks.bootstrap 2>&1 | tee "$DEMO/bootstrap.log" | grep -E '"(version|status|train_seconds)"' || true

first=$(python - <<'PY'
import datetime as dt, yaml, os
p = yaml.safe_load(open(os.environ["FRESHREC_PARAMS"]))
print(dt.date.fromisoformat(p["source"]["warmup_end"]) + dt.timedelta(days=1))
PY
)
days=$(python -c "import datetime as d; s=d.date.fromisoformat('$first'); print(' '.join(str(s+d.timedelta(i)) for i in range(3)))")
for day in $days; do
  stamp "replay: landing $day as the upstream app would"
  python -m tasks.replay --date "$day" >/dev/null
  stamp "airflow dags test freshrec_daily $day (auto_approve)"
  if ! airflow dags test freshrec_daily "$day" -c '{"auto_approve": true}' >"$DEMO/dag-$day.log" 2>&1; then
    echo "  $day stopped before promotion (the table says why; log: $DEMO/dag-$day.log)"
  fi
done

stamp "per-day summary"
last=$(echo $days | awk '{print $NF}')
python -m tasks.summary --from "$first" --to "$last" --json "$DEMO/summary.json"
stamp "champion pointer and a serving check"
python -m serve --once
stamp "done (state in $DEMO)"
