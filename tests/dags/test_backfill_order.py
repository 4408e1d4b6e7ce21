"""Days in order under concurrency: three daily runs started in the same second (what a backfill
with max-active-runs 10 does), each a real `airflow dags test` process with its own metadata DB and
its own empty data disk (as if on three workers), sharing only the object store and the landing
zone. Each day must build on the champion the day before left, and the pointer must end on the last."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow]


def test_three_days_started_at_once_build_each_on_the_day_before(bootstrapped, registry, tmp_path, write_params):
    from tasks import replay

    params = bootstrapped["params"]
    params["evaluate"]["max_ndcg_drop"] = 1.0  # tiny models: every day's challenger may be promoted
    params_file = write_params(params)
    days = [bootstrapped["day1"] + dt.timedelta(days=i) for i in range(3)]
    for day in days:  # the upstream has landed all three days
        replay.run(day, params)
    procs = []
    for i, day in enumerate(days):
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(tmp_path / f"airflow-{i}"),
            "FRESHREC_DATA": str(tmp_path / f"worker-{i}"),
            "FRESHREC_PARAMS": str(params_file),
            "FRESHREC_BASE_POKE_SECONDS": "2",
        }
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
        procs.append((day, env))
    running = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow",
                "dags",
                "test",
                "freshrec_daily",
                str(day),
                "-c",
                '{"auto_approve": true}',
            ],
            env=env,
            stdout=(tmp_path / f"dag-{day}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for day, env in procs
    ]
    codes = [p.wait(timeout=900) for p in running]
    logs = {day: (tmp_path / f"dag-{day}.log").read_text()[-3000:] for day in days}
    assert codes == [0, 0, 0], logs
    chain = [bootstrapped["champion"]]
    for day in days:
        (version,) = [v for v in registry.versions() if v.startswith(str(day))]
        assert registry.manifest(version)["base"] == chain[-1], f"{day} did not build on the day before"
        chain.append(version)
    assert registry.pointer()[0]["version"] == chain[-1]
    assert [h["version"] for h in registry.history()] == chain
    for i in range(3):  # each try worked in a directory of its own, gone when it ended; only verified blobs stay
        assert list((tmp_path / f"worker-{i}" / ".cache" / "tasks").iterdir()) == []
        assert not (tmp_path / f"worker-{i}" / "runs").exists()
