"""
### freshrec replay (embedded default only)

Stands in for the upstream app on the embedded MovieLens default: each day it drops
that day's real events into the landing zone, where `freshrec_daily` picks them up.
With your own data, your export job does this instead: pause or delete this DAG.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, task

from tasks.settings import Settings, settings


@dag(
    dag_id="freshrec_replay",
    # a run covers one UTC day [D, D+1): logical date D, it starts once D is over (classic interval
    # semantics; a plain "@daily" in Airflow 3 would stamp the run with D+1, the day just begun)
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.parse(settings().start_date, tz="UTC"),
    end_date=pendulum.parse(settings().end_date or Settings().end_date, tz="UTC"),  # the replayed data
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["freshrec", "demo"],
    default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=1), "owner": "ml-platform"},
)
def freshrec_replay():
    @task
    def land_events(logical_date=None) -> dict:
        from tasks import replay
        from tasks.params import load_params

        (landed,) = replay.run(logical_date.date(), load_params())
        return {"day": str(landed.day), "rows": landed.rows, "path": str(landed.path)}

    land_events()


freshrec_replay()
