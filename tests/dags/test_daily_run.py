"""Real `dag.test()` runs of the daily DAG on a real ML-100K slice against a real SeaweedFS:
approved through the HITL REST API (promoted, pointer moved), rejected (nothing promoted,
pointer unchanged), and a corrupted partition (quarantined, champion unchanged, run failed)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tasks.common import read_json
from tasks.replay import EVENTS_FILE, landing_path
from tests.conftest import from_store

pytestmark = [pytest.mark.slow]
DAGS = Path(__file__).resolve().parents[2] / "dags"
ANSWER_S = 120  # for the approver to have its answer taken, once the approval waits


@pytest.fixture(scope="module")
def api():
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    return TestClient(create_app(apps="core"))


@pytest.fixture
def daily(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS)).dags["freshrec_daily"]


class _Parked(logging.Handler):
    """Set once dag.test() logs that its loop waits for human input.

    dag.test() runs the approval task in-process, and after it parks writes the task's state back
    (`ti.set_state(...)`, a merge of its stale copy). An answer recorded before that write is
    overwritten: the task sits in `awaiting_input` with its response already taken, and dag.test()
    waits for ever. (A real worker parks through the Execution API, which checks for an early
    answer; only dag.test() has this window.) Once the loop logs that it waits, nothing in
    dag.test() writes the task until an answer resumes it, so the approver answers after that."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.event = threading.Event()

    def emit(self, record):
        if record.getMessage().startswith("Waiting for Human-in-the-loop input"):
            self.event.set()


REASONS = {"Approve": "", "Reject": "new-item NDCG fell 12 %: retrain after the catalogue fix"}  # as typed


def _answer(api, decision: str, parked: threading.Event, done: threading.Event, log: list) -> None:
    """Play the approver: once the approval is parked, answer it over REST. If no answer is taken
    within ANSWER_S, fail the waiting task so that dag.test() ends and the test fails with the
    reasons in `log`, instead of waiting for ever."""
    while not parked.wait(0.5):
        if done.is_set():  # the run ended without asking
            return
    deadline = time.monotonic() + ANSWER_S
    sent = None  # the task's URL once an answer went out (it may be taken even if the call raised)
    while not done.is_set() and time.monotonic() < deadline:
        try:
            r = api.get("/api/v2/dags/freshrec_daily/dagRuns/~/hitlDetails", params={"response_received": False})
            pending = r.json().get("hitl_details", [])
            if not pending and sent:  # answered: did it resume the task?
                if _resumed(api, sent, done, deadline):
                    return
                log.append(("stranded", "answer taken but the task still awaits input", ""))
                break
            for d in pending:
                ti = d["task_instance"]
                run, task, index = ti["dag_run_id"], ti["task_id"], ti["map_index"]
                sent = f"/api/v2/dags/freshrec_daily/dagRuns/{run}/taskInstances/{task}/{index}"
                answer = {"chosen_options": [decision], "params_input": {"reason": REASONS[decision]}}
                resp = api.patch(f"{sent}/hitlDetails", json=answer)
                log.append((ti["task_id"], resp.status_code, d.get("body") or ""))
        except Exception as e:  # any failure is retried, and kept for the test's message
            log.append(("error", repr(e), ""))
        time.sleep(0.5)
    if not done.is_set():
        _fail_waiting_approvals()


def _resumed(api, ti_url: str, done: threading.Event, deadline: float) -> bool:
    """Whether the answered task ran to an end (or the run ended) before the deadline. Leaving
    `awaiting_input` is not enough: an overwritten answer shows `scheduled` for a moment first."""
    while not done.is_set() and time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # a failed read is read again
            if api.get(ti_url).json().get("state") in {"success", "failed", "skipped"}:
                return True
        time.sleep(0.5)
    return done.is_set()


def _fail_waiting_approvals() -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import update

    for _ in range(10):  # a locked SQLite is tried again
        try:
            with create_session() as session:
                session.execute(
                    update(TaskInstance)
                    .where(
                        TaskInstance.dag_id == "freshrec_daily", TaskInstance.state == TaskInstanceState.AWAITING_INPUT
                    )
                    .values(state=TaskInstanceState.FAILED)
                )
            return
        except Exception:
            time.sleep(1)


def _answers(log: list) -> list:
    """The approver's answers (task id, HTTP status, request body), errors and notes left out."""
    return [entry for entry in log if entry[0] == "approve_promotion"]


def _run_day(dag, day: dt.date, conf: dict, api=None, decision: str | None = None):
    done, log = threading.Event(), []
    parked, thread = _Parked(), None
    dag_log = logging.getLogger("airflow.sdk.definitions.dag")  # where dag.test() says it waits
    level = dag_log.level
    if decision:
        dag_log.addHandler(parked)
        dag_log.setLevel(logging.INFO)
        thread = threading.Thread(target=_answer, args=(api, decision, parked.event, done, log), daemon=True)
        thread.start()
    try:
        logical = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        dr = dag.test(logical_date=logical, run_conf=conf)
    finally:
        done.set()
        if thread:
            thread.join(10)
            dag_log.removeHandler(parked)
            dag_log.setLevel(level)
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    return dr, states, log


def _land(bootstrapped, day):
    from tasks import replay

    replay.run(day, bootstrapped["params"])


def test_approved_day_is_promoted_and_pointer_moves(bootstrapped, registry, daily, api, webhook):
    day = bootstrapped["day1"]
    _land(bootstrapped, day)
    dr, states, log = _run_day(daily, day, {"auto_approve": False}, api, "Approve")
    assert _answers(log) and _answers(log)[-1][1] == 200 and dr.state == "success", log
    (told,) = webhook.messages  # the approvers were told the request waits, and nothing failed
    assert told["freshrec"]["event"] == "approval" and told["freshrec"]["task_id"] == "approve_promotion"
    assert told["text"] == (
        f"freshrec: freshrec_daily {day}: the challenger waits for your approval (no answer by 24 h from now is a "
        f"Reject): {told['freshrec']['url']}"
    )
    body = _answers(log)[-1][2]
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
    summary = read_json(
        from_store(bootstrapped["params"], bootstrapped["layout"], bootstrapped["layout"].run(day) / "summary.json")
    )
    for name, link in summary["reports"].items():  # the summary links the same reports
        assert api.get(urlsplit(link).path).status_code == 200, name
    manifest = registry.manifest(pointer["version"])
    assert manifest["lineage"]["data_partitions"][str(day)]
    assert set(manifest["files"]) >= {"model.onnx", "model.int8.onnx", "weights.safetensors", "metrics.json"}


def test_rejected_day_promotes_nothing(bootstrapped, registry, daily, api, monkeypatch):
    """Also with dag.test()'s write-back of the parked task slowed to 2 s: the window in which an
    answer used to be overwritten (the approval then waited for ever, and CI hit its time limit)."""
    from airflow.models.taskinstance import TaskInstance

    set_state = TaskInstance.set_state

    def slow_park(self, state, **kw):
        if state == "awaiting_input":
            time.sleep(2)
        return set_state(self, state, **kw)

    monkeypatch.setattr(TaskInstance, "set_state", slow_park)
    day = bootstrapped["day1"]
    _land(bootstrapped, day)
    versions_before = registry.versions()
    dr, states, log = _run_day(daily, day, {"auto_approve": False}, api, "Reject")
    assert _answers(log) and _answers(log)[-1][1] == 200 and "stranded" not in str(log), log
    assert states["approve_promotion"] == "success" and states["promote_champion"] == "skipped"
    assert states["summarize_run"] == "skipped" and dr.state == "success"  # marked in the grid, not failed
    assert registry.pointer()[0]["version"] == bootstrapped["champion"]
    assert registry.versions() == versions_before
    (rejection,) = [h for h in registry.history() if h.get("action") == "reject"]  # the rejection is on record
    assert rejection["approver"] == "Anonymous" and rejection["day"] == str(day)
    assert rejection["evidence_sha256"] and rejection["reason"] == REASONS["Reject"]  # in the approver's words
    answered, recorded = (dt.datetime.fromisoformat(rejection[k].replace("Z", "+00:00")) for k in ("answered_at", "at"))
    assert answered <= recorded  # who, when, why
    summary = read_json(
        from_store(bootstrapped["params"], bootstrapped["layout"], bootstrapped["layout"].run(day) / "summary.json")
    )
    assert summary["promotion"]["status"] == "rejected" and summary["promotion"]["reason"] == REASONS["Reject"]
    from tasks.summary import format_table

    assert f"rejected by Anonymous at {rejection['answered_at'][:16]}: new-item NDCG fell" in format_table([summary])


def test_corrupted_partition_is_quarantined_and_champion_untouched(bootstrapped, registry, daily, webhook):
    day = bootstrapped["day1"]
    _land(bootstrapped, day)
    path = landing_path(Path(bootstrapped["params"]["source"]["landing_dir"]), day) / EVENTS_FILE
    path.write_bytes(path.read_bytes()[:200])  # a truncated upload
    dr, states, _ = _run_day(daily, day, {"auto_approve": True})
    assert dr.state == "failed"
    assert states["validate_events"] == "failed"
    (alert,) = webhook.messages  # one message for the failed day, naming the step and linking its log
    assert alert["freshrec"]["task_id"] == "validate_events" and alert["freshrec"]["day"] == str(day)
    assert alert["freshrec"]["url"].endswith("/tasks/validate_events")
    assert states["train_challenger"] == "upstream_failed" and states["promote_champion"] == "upstream_failed"
    layout, params = bootstrapped["layout"], bootstrapped["params"]
    assert (from_store(params, layout, layout.quarantine(day)) / EVENTS_FILE).read_bytes() == path.read_bytes()
    assert (layout.quarantine(day) / "report.json").exists()
    assert registry.pointer()[0]["version"] == bootstrapped["champion"]
    assert from_store(
        params, layout, layout.run(day) / "summary.json"
    ).exists()  # the summary still tells what happened


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


def test_params_edited_in_the_middle_of_a_day_do_not_reach_it(bootstrapped, registry, daily, write_params):
    """params.yaml is edited while day D runs, as soon as its first task has taken the day's snapshot (here:
    a latency budget no model meets). Every later task reads the snapshot, so the day finishes and promotes
    under the params it started with; the next day, started after the edit, runs under the new ones."""
    import threading

    from tasks.store import Store

    day, params = bootstrapped["day1"], bootstrapped["params"]
    params["evaluate"]["max_ndcg_drop"] = 1.0  # tiny models: the latency gate is the one under test
    write_params(params)
    _land(bootstrapped, day)
    store, edited = Store.from_env(params), {**params, "benchmark": {**params["benchmark"], "p99_budget_ms": 1e-6}}
    stop = threading.Event()

    def edit_once_started():
        while not stop.is_set():
            if store.exists(f"runs/date={day}/params.json"):
                write_params(edited)
                return
            time.sleep(0.02)

    editor = threading.Thread(target=edit_once_started, daemon=True)
    editor.start()
    try:
        dr, states, _ = _run_day(daily, day, {"auto_approve": True})
    finally:
        stop.set()
        editor.join(5)
    assert states["benchmark_latency"] == "success" and dr.state == "success", states
    assert registry.pointer()[0]["version"].startswith(str(day))
    snapshot = json.loads(store.read(f"runs/date={day}/params.json"))
    assert snapshot["params"]["benchmark"]["p99_budget_ms"] == params["benchmark"]["p99_budget_ms"]

    nxt = day + dt.timedelta(days=1)  # the edit applies from the next day on
    _land(bootstrapped, nxt)
    dr, states, _ = _run_day(daily, nxt, {"auto_approve": True})
    assert states["benchmark_latency"] == "failed" and dr.state == "failed", states


def test_a_typo_in_params_fails_the_days_first_task_at_once(bootstrapped, daily, write_params):
    """A typo'd key in params.yaml: the day's first task fails in seconds, without retries, naming the key;
    nothing runs under a silently ignored setting."""
    day, params = bootstrapped["day1"], bootstrapped["params"]
    params["train"]["incremental"]["replay_user"] = 64
    write_params(params)
    t0 = time.monotonic()
    dr, states, _ = _run_day(daily, day, {"auto_approve": True})
    assert states["wait_for_landing"] == "failed" and dr.state == "failed", states
    assert time.monotonic() - t0 < 60
    assert all(s in ("upstream_failed", None, "failed") for t, s in states.items() if t != "wait_for_landing"), states
