"""
### freshrec store gc

Reclaims the object store's blobs that no unit lists any more (superseded snapshots, training
checkpoints cleared when their model was saved): `tasks/store.py` `Store.mark` / `Store.sweep`,
the same as `python -m tasks.store gc`. Safe beside running days: a blob goes only after two runs at
least 24 hours apart found it unlisted and it is older than that, so the first run deletes nothing
(another grace: run the command with `--grace-hours`). The task's return value (in XCom) counts what
it found and deleted.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import dag, task

from tasks.alerts import DayAlert


@dag(
    dag_id="freshrec_store_gc",
    schedule="@daily",  # wall-clock maintenance: not tied to the data's days
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["freshrec", "maintenance"],
    default_args={
        "retries": 1,
        "retry_delay": dt.timedelta(minutes=5),
        "owner": "ml-platform",
        "on_failure_callback": [DayAlert("failed")],
    },
)
def freshrec_store_gc():
    @task
    def collect_garbage() -> dict:
        from tasks.common import refusal_fails_for_good
        from tasks.params import load_params
        from tasks.store import Store

        store = Store.from_env(load_params())
        return refusal_fails_for_good(store.gc)  # an unreadable listing: the same on a retry, until mended

    collect_garbage()


freshrec_store_gc()
