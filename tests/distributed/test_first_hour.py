"""`make test-distributed`: the documented first hour (docs/operations.md), on a LocalExecutor stack
(every task on one machine and one disk) and on CeleryExecutor (two workers with two slots each, their
own disks, SeaweedFS the only shared state), both on PostgreSQL: the bootstrap is triggered and, without
waiting for it, three days are landed and backfilled at once with `--max-active-runs 10`.

What a new user must get: no task fails (tasks at once on one machine never delete each other's files),
one full training only (the bootstrap's: the days wait for its outcome instead of starting their own),
and the days trained in order, each on the champion the day before left. On Celery, training runs on
the `gpu` worker and everything else on the other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import DAY1, DAY2
from tests.distributed.conftest import task_hosts, timeline, wait_runs

pytestmark = [pytest.mark.slow]
DAY3 = "1997-10-02"
DAYS = [DAY1, DAY2, DAY3]


def _registry(env: dict, monkeypatch):
    for key in ("FRESHREC_BUCKET", "FRESHREC_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, env[key])
    from tasks.promote import registry_from_env

    return registry_from_env({"promote": {"bucket": env["FRESHREC_BUCKET"]}, "run": {"model_name": "seqrec"}})


def test_first_hour_bootstrap_and_a_three_day_backfill_at_once(cluster, monkeypatch):
    t0 = time.monotonic()
    cluster.airflow("dags", "unpause", "freshrec_bootstrap")
    cluster.airflow("dags", "trigger", "freshrec_bootstrap")
    env = cluster.component_env("upstream")
    for day in DAYS:  # the upstream export lands the days in the object-store landing zone
        subprocess.run([sys.executable, "-m", "tasks.replay", "--date", day], env=env, check=True, capture_output=True)
    cluster.airflow("dags", "unpause", "freshrec_daily")
    cluster.airflow(
        "backfill", "create", "--dag-id", "freshrec_daily", "--from-date", DAY1, "--to-date", DAY3,
        "--max-active-runs", "10", "--dag-run-conf", '{"auto_approve": true}',
    )  # fmt: skip
    states = wait_runs(cluster, "freshrec_daily", DAYS, timeout=float(os.environ.get("FRESHREC_FIRST_HOUR_S", "1500")))
    boot = [r[0] for r in cluster.sql("select state from dag_run where dag_id='freshrec_bootstrap'")]
    rows = task_hosts(cluster, "freshrec_daily")
    report = sorted((str(r[0].date()), r[1], r[2], r[3]) for r in rows if str(r[0].date()) in DAYS)
    print(f"\n[{cluster.executor}] bootstrap + three days at once: {time.monotonic() - t0:.0f} s")
    print(timeline(cluster, "freshrec_daily"))
    assert boot == ["success"], f"bootstrap run {boot}{cluster.tails()}"
    failed_tries = cluster.sql(
        "select dag_id, task_id, try_number from task_instance_history where state = 'failed' "
        "union all select dag_id, task_id, try_number from task_instance where state in ('failed', 'upstream_failed')"
    )
    failed_days = {d: states[d] for d in DAYS if states[d] != "success"}
    logs = cluster.task_logs(failed_tries)
    assert not failed_days, f"days {failed_days}; failed tries {failed_tries}; tasks {report}{logs}"
    assert failed_tries == [], f"tasks failed (and were retried): {failed_tries}{logs}"

    registry = _registry(env, monkeypatch)
    by_day = {d: next(v for v in registry.versions() if v.startswith(d)) for d in DAYS}
    (boot_version,) = [v for v in registry.versions() if v not in by_day.values()]
    bases = [registry.manifest(by_day[d])["base"] for d in DAYS]
    assert bases == [boot_version, by_day[DAY1], by_day[DAY2]], f"days did not train in order: {bases}"
    assert registry.pointer()[0]["version"] == by_day[DAY3]

    modes = {}  # what each training run did, from the train report the day's challenger carries
    for d in DAYS:
        body, _ = registry._get(registry.version_key(by_day[d], "train.json"))
        modes[d] = json.loads(body)["mode"]
    assert "full" not in modes.values(), f"a day trained from scratch beside the bootstrap: {modes}"

    # the days waited for the bootstrap and for each other in the triggerer, not in task processes
    assert cluster.sql("select count(*) from task_reschedule") == [(0,)]
    logs = [cluster.base / "triggerer.log", *(cluster.base / "triggerer").rglob("*.log*")]  # its own, the tasks'
    waits = "".join(path.read_text(errors="replace") for path in logs if path.is_file())
    assert f"day {DAY2} waits: day {DAY1} has no recorded outcome" in waits, cluster.tails()
    if cluster.executor == "celery":
        ran = {(day, task): host for day, task, state, host in report if state == "success" and host}
        assert all(ran[(d, "train_challenger")] == "worker-gpu" for d in DAYS), ran
        assert {h for (d, t), h in ran.items() if t != "train_challenger"} == {"worker-cpu"}, ran
    for name in ("dag-processor", "api-server", *(("scheduler",) if cluster.executor == "celery" else ())):
        assert not (cluster.base / name / "data").exists(), f"{name} wrote pipeline data on its own disk"
    for disk in cluster.base.glob("*/data/.cache/tasks"):  # every try's working directory went with it
        assert list(disk.iterdir()) == [], f"left behind: {list(disk.iterdir())}{cluster.tails()}"
