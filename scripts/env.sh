# Environment shared by `make run`, `make airflow` and `make test`. Source it; it prints nothing.
# Everything that phones home is switched off: this machine reaches package registries only.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
umask 077  # what the commands generate (airflow.db, logs, keys, passwords) is readable by its owner only
export PATH="$ROOT/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export GX_ANALYTICS_ENABLED=false
export DVC_NO_ANALYTICS=1
export SCARF_ANALYTICS=false DO_NOT_TRACK=1
export AIRFLOW__USAGE_DATA_COLLECTION__ENABLED=False
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.run/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__PARALLELISM=4
# Airflow's LocalExecutor without its deferral race (apache/airflow#67287): tasks/local_executor.py
export AIRFLOW__CORE__EXECUTOR=tasks.local_executor.LocalExecutor
# each task process is forked from a parent that imported torch, transformers and GX once (tasks/preload.py)
export AIRFLOW__SCHEDULER__MP_START_METHOD=forkserver
export AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD=airflow,airflow.executors.local_executor,tasks.preload
export AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=tasks.celery_config.CELERY_CONFIG
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT=8080
export AIRFLOW__LOGGING__LOGGING_LEVEL=INFO  # each step logs what it read, decided and measured
export TOKENIZERS_PARALLELISM=false
