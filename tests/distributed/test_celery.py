"""`make test-distributed`: freshrec on Airflow's CeleryExecutor with real PostgreSQL and Redis, two
Celery workers with their own empty disks (`default` and `gpu` queues) and SeaweedFS as the only
shared state. The bootstrap, then a backfill of two days with max-active-runs 10 (both days start at
once), pass end to end; training runs on the `gpu` worker, everything else on the other; day 2
builds on day 1's champion; and no component reads another's disk."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import DAY1, DAY2
from tests.distributed.conftest import task_hosts, wait_runs

pytestmark = [pytest.mark.slow]


def test_bootstrap_and_a_two_day_backfill_on_celery(cluster, monkeypatch):
    t0 = time.monotonic()
    cluster.airflow("dags", "unpause", "freshrec_bootstrap")
    cluster.airflow("dags", "trigger", "freshrec_bootstrap")
    deadline = time.monotonic() + float(os.environ.get("FRESHREC_BOOTSTRAP_TIMEOUT", "600"))
    while time.monotonic() < deadline:
        states = [r[0] for r in cluster.sql("select state from dag_run where dag_id='freshrec_bootstrap'")]
        if states and states[0] in ("success", "failed"):
            break
        time.sleep(3)
    assert states == ["success"], f"bootstrap run {states}{cluster.tails()}"
    t_boot = time.monotonic() - t0

    env = cluster.component_env("upstream")
    for day in (DAY1, DAY2):  # the upstream export lands both days in the object-store landing zone
        subprocess.run([sys.executable, "-m", "tasks.replay", "--date", day], env=env, check=True, capture_output=True)
    cluster.airflow("dags", "unpause", "freshrec_daily")
    cluster.airflow(
        "backfill",
        "create",
        "--dag-id",
        "freshrec_daily",
        "--from-date",
        DAY1,
        "--to-date",
        DAY2,
        "--max-active-runs",
        "10",
        "--dag-run-conf",
        '{"auto_approve": true}',
    )
    states = wait_runs(cluster, "freshrec_daily", [DAY1, DAY2], timeout=900)
    t_days = time.monotonic() - t0 - t_boot
    rows = task_hosts(cluster, "freshrec_daily")
    report = sorted((str(r[0].date()), r[1], r[2], r[3]) for r in rows if str(r[0].date()) in (DAY1, DAY2))
    print(f"\nbootstrap {t_boot:.0f} s, two backfilled days {t_days:.0f} s")
    for line in report:
        print(*line)
    assert states[DAY1] == states[DAY2] == "success", report

    ran = {(day, task): host for day, task, state, host in report if state == "success" and host}
    assert all(ran[(d, "train_challenger")] == "worker-gpu" for d in (DAY1, DAY2)), ran
    assert {h for (d, t), h in ran.items() if t != "train_challenger"} == {"worker-cpu"}, ran

    for key in ("FRESHREC_BUCKET", "FRESHREC_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, env[key])
    from tasks.promote import registry_from_env

    registry = registry_from_env({"promote": {"bucket": env["FRESHREC_BUCKET"]}, "run": {"model_name": "seqrec"}})
    v1 = next(v for v in registry.versions() if v.startswith(DAY1))
    v2 = next(v for v in registry.versions() if v.startswith(DAY2))
    assert registry.manifest(v2)["base"] == v1, "day 2 did not build on day 1's champion"
    assert registry.pointer()[0]["version"] == v2

    for name in ("scheduler", "dag-processor", "api-server"):
        assert not (cluster.base / name / "data").exists(), f"{name} wrote pipeline data on its own disk"
    gpu = cluster.base / "worker-gpu" / "data"
    # the gpu worker ran no ingest or validation, yet trained on the days' data: it came from the store
    assert (gpu / "raw" / "events" / f"date={DAY2}").is_dir() and not (gpu / "reports" / "validation").exists()
