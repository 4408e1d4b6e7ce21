"""Real `dag.test()` runs of the daily DAG on a real ML-100K slice against a real SeaweedFS:
approved through the HITL REST API (promoted, pointer moved), rejected (nothing promoted,
pointer unchanged), and a corrupted partition (quarantined, champion unchanged, run failed)."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tasks.common import read_json
from tasks.replay import EVENTS_FILE, landing_path

pytestmark = [pytest.mark.slow]
DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def api():
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    return TestClient(create_app(apps="core"))


@pytest.fixture
def daily(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS)).dags["freshrec_daily"]


def _answer(api, decision: str, stop: threading.Event, log: list, timeout: float = 300) -> None:
    """Play the approver: wait for the pending approval of freshrec_daily and answer it over REST."""
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        r = api.get("/api/v2/dags/freshrec_daily/dagRuns/~/hitlDetails", params={"response_received": False})
        for d in r.json().get("hitl_details", []):
            ti = d["task_instance"]
            url = (
                f"/api/v2/dags/freshrec_daily/dagRuns/{ti['dag_run_id']}/taskInstances/"
                f"{ti['task_id']}/{ti['map_index']}/hitlDetails"
            )
            resp = api.patch(url, json={"chosen_options": [decision], "params_input": {}})
            log.append((ti["task_id"], resp.status_code, d.get("body") or ""))
            return
        time.sleep(0.5)


def _run_day(dag, day: dt.date, conf: dict, api=None, decision: str | None = None):
    stop, log = threading.Event(), []
    thread = None
    if decision:
        thread = threading.Thread(target=_answer, args=(api, decision, stop, log), daemon=True)
        thread.start()
    try:
        logical = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        dr = dag.test(logical_date=logical, run_conf=conf)
    finally:
        stop.set()
        if thread:
            thread.join(10)
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    return dr, states, log


def _land(bootstrapped, day):
    from tasks import replay

    replay.run(day, bootstrapped["params"])


def test_approved_day_is_promoted_and_pointer_moves(bootstrapped, registry, daily, api):
    day = bootstrapped["day1"]
    _land(bootstrapped, day)
    dr, states, log = _run_day(daily, day, {"auto_approve": False}, api, "Approve")
    assert log and log[0][:2] == ("approve_promotion", 200)
    body = log[0][2]
    assert "Candidate version" in body and "Drift" in body and "p99" in body  # the evidence is in the request
    assert "| drift signal | value |" in body and "js_item_popularity" in body  # signal values, not just words
    assert "as served: items of the user's last window never recommended" in body  # export.exclude_seen, in words
    links = re.findall(r"\]\((http[^)]+)\)", body) + re.findall(r"reports: (http\S+)", body)
    assert len(links) >= 3  # Data Docs, drift report, the day's index
    for link in links:  # each opens through the API server (the plugin), none is a worker's path
        r = api.get(urlsplit(link).path)
        assert r.status_code == 200, (link, r.text[:200])
    assert dr.state == "success", states
    assert states["promote_champion"] == "success"
    pointer, _ = registry.pointer()
    assert pointer["version"].startswith(str(day)) and pointer["previous"] == bootstrapped["champion"]
    assert pointer["approver"] == "Anonymous"  # the (all-admins test) user who answered
    summary = read_json(bootstrapped["layout"].run(day) / "summary.json")
    for name, link in summary["reports"].items():  # the summary links the same reports
        assert api.get(urlsplit(link).path).status_code == 200, name
    manifest = registry.manifest(pointer["version"])
    assert manifest["lineage"]["data_partitions"][str(day)]
    assert set(manifest["files"]) >= {"model.onnx", "model.int8.onnx", "weights.safetensors", "metrics.json"}


def test_rejected_day_promotes_nothing(bootstrapped, registry, daily, api):
    day = bootstrapped["day1"]
    _land(bootstrapped, day)
    versions_before = registry.versions()
    _dr, states, log = _run_day(daily, day, {"auto_approve": False}, api, "Reject")
    assert log and log[0][1] == 200
    assert states["approve_promotion"] == "success" and states["promote_champion"] == "skipped"
    assert registry.pointer()[0]["version"] == bootstrapped["champion"]
    assert registry.versions() == versions_before
    (rejection,) = [h for h in registry.history() if h.get("action") == "reject"]  # the rejection is on record
    assert rejection["approver"] == "Anonymous" and rejection["day"] == str(day)
    assert rejection["evidence_sha256"] and rejection["reason"] == "rejected in Airflow"
    summary = read_json(bootstrapped["layout"].run(day) / "summary.json")
    assert summary["promotion"]["status"] == "rejected"


def test_corrupted_partition_is_quarantined_and_champion_untouched(bootstrapped, registry, daily):
    day = bootstrapped["day1"]
    _land(bootstrapped, day)
    path = landing_path(Path(bootstrapped["params"]["source"]["landing_dir"]), day) / EVENTS_FILE
    path.write_bytes(path.read_bytes()[:200])  # a truncated upload
    dr, states, _ = _run_day(daily, day, {"auto_approve": True})
    assert dr.state == "failed"
    assert states["validate_events"] == "failed"
    assert states["train_challenger"] == "upstream_failed" and states["promote_champion"] == "upstream_failed"
    layout = bootstrapped["layout"]
    assert (layout.quarantine(day) / EVENTS_FILE).read_bytes() == path.read_bytes()
    assert (layout.quarantine(day) / "report.json").exists()
    assert registry.pointer()[0]["version"] == bootstrapped["champion"]
    assert (layout.run(day) / "summary.json").exists()  # the summary still tells what happened


def test_killed_promotion_then_dag_re_run_converges(bootstrapped, registry, daily, kill_upload_of):
    """The worker dies while promote_champion uploads model.onnx (files without a manifest); a re-run of
    the day's DAG retrains, re-publishes the same bytes and promotes the same version, no manual cleanup."""
    day = bootstrapped["day1"]
    _land(bootstrapped, day)
    revive = kill_upload_of("model.onnx")
    dr, states, _ = _run_day(daily, day, {"auto_approve": True})
    assert states["promote_champion"] == "failed" and dr.state == "failed"
    (half,) = [v for v in registry.versions() if v.startswith(str(day))]
    assert registry.pointer()[0]["version"] == bootstrapped["champion"]

    revive()
    dr, states, _ = _run_day(daily, day, {"auto_approve": True})
    assert dr.state == "success", states
    assert registry.pointer()[0]["version"] == half
    assert registry.manifest(half)["base"] == bootstrapped["champion"]
