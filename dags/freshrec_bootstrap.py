"""
### freshrec bootstrap

Trains the first champion on the warm-up window (`source.warmup_end` in params.yaml)
and promotes it (approver `bootstrap`). Trigger it once, before the first daily run;
it does nothing if a champion already exists. Same steps as `python -m tasks.bootstrap`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from tasks.alerts import DayAlert


@dag(
    dag_id="freshrec_bootstrap",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["freshrec", "ml"],
    default_args={
        "retries": 1,
        "retry_delay": dt.timedelta(minutes=2),
        "owner": "ml-platform",
        "on_failure_callback": [DayAlert("failed")],
    },
)
def freshrec_bootstrap():
    @task
    def bootstrap_champion() -> dict:
        from tasks.bootstrap import bootstrap
        from tasks.common import parse_day, quiet_third_party_logs
        from tasks.day import task_scope
        from tasks.params import load_params

        quiet_third_party_logs()
        params = load_params()
        # a working directory of its own: daily tasks started beside it on this machine never touch its files
        with task_scope("bootstrap", parse_day(params["source"]["warmup_end"]), params) as (layout, store):
            return bootstrap(params, layout, store=store)  # training logs its progress: the longest step

    bootstrap_champion()


freshrec_bootstrap()
