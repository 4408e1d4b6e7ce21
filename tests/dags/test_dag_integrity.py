"""DAG files: import cleanly, define what they promise, stay cheap to parse (no heavy imports)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_file_imports(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == {"freshrec_daily", "freshrec_bootstrap", "freshrec_replay", "freshrec_store_gc"}


def test_daily_dag_shape(dagbag):
    dag = dagbag.dags["freshrec_daily"]
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.start_date.isoformat().startswith("1997-09-20")  # ML-100K's first day: any replay day
    from airflow.sdk import CronDataIntervalTimetable

    # one run per UTC day, stamped with the day it covers (not the day it runs on)
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression in ("@daily", "0 0 * * *")
    order = [t.task_id for t in dag.topological_sort()]
    main_path = ["wait_for_landing", "ingest_events", "validate_events", "pull_champion", "detect_drift",
                 "train_challenger", "evaluate_challenger", "export_onnx", "benchmark_latency",
                 "approve_promotion", "promote_champion"]  # fmt: skip
    assert [t for t in order if t in main_path] == main_path
    assert dag.get_task("approve_promotion").response_timeout.total_seconds() == 24 * 3600
    assert dag.get_task("approve_promotion").defaults == ["Reject"]
    assert dag.get_task("validate_events").retries == 0  # bad data does not get better by retrying
    assert dag.get_task("ingest_events").retries == 2
    assert set(dag.params.keys()) == {
        "auto_approve",
        "force_mode",
        "day",
        "accept_checks",
        "base",
        "replace_delivery",
        "refresh_params",
    }
    assert dag.params["auto_approve"] is False


def test_train_task_goes_to_the_configured_queue():
    code = (
        "import os; os.environ['FRESHREC_TRAIN_QUEUE']='gpu';"
        f"from airflow.dag_processing.dagbag import DagBag; b=DagBag(dag_folder={str(DAGS)!r});"
        "print(b.dags['freshrec_daily'].get_task('train_challenger').queue)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "gpu"


def test_parsing_imports_no_heavy_modules():
    """The scheduler parses DAG files constantly: torch, pandas, GX, onnx must not load at parse time."""
    code = (
        "import sys; from airflow.dag_processing.dagbag import DagBag;"
        f"b=DagBag(dag_folder={str(DAGS)!r}); assert not b.import_errors;"
        "print(sorted(m for m in ('torch','pandas','great_expectations','onnxruntime','transformers','tasks.train')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "bad",  # malformed; not a calendar day; the days around the window, and today's
    [
        "1998-13-40",
        "1998-01-15/../../x",
        "98-01-15",
        "1998-1-5",
        "1998-02-30",
        "1997-09-19",
        "1998-04-23",
        "2026-12-31",
    ],
)
def test_day_param_refuses_a_malformed_day_at_trigger_time(dagbag, bad):
    """The trigger form and the REST API refuse it at once, instead of a run that fails after retries or waits
    for a worker slot to refuse: not a calendar day (02-30) or outside the data window (1997-09-20 ..
    1998-04-22 here). The same schema is checked where the API server resolves the serialised DAG."""
    from airflow.sdk.exceptions import ParamValidationError
    from airflow.serialization.definitions.param import SerializedParam

    param = dagbag.dags["freshrec_daily"].params.get_param("day")
    assert "YYYY-MM-DD" in param.description and "1997-09-20 .. 1998-04-22" in param.description
    for good in ("1998-03-01", "1997-09-20", "1998-04-22", None):
        assert param.resolve(good) == good
    with pytest.raises(ParamValidationError):
        param.resolve(bad)
    spec = param.serialize()  # the API server's copy: value, description, schema
    served = SerializedParam(bad, spec["description"], **spec["schema"])
    assert served.resolve() is None  # refused (the API answers 400 with the schema's words)
    assert SerializedParam("1998-03-01", spec["description"], **spec["schema"]).resolve() == "1998-03-01"


def test_only_the_approvers_in_params_can_answer_the_approval(dagbag, monkeypatch):
    """`promote.approvers` becomes the HITL task's assigned users; Airflow refuses anyone else's answer."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    task = dagbag.dags["freshrec_daily"].get_task("approve_promotion")
    assert task.assigned_users == [{"id": "admin", "name": "admin"}]
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    auth, ids = SimpleAuthManager(), {u["id"] for u in task.assigned_users}
    assert auth.is_authorized_hitl_task(assigned_users=ids, user=SimpleAuthManagerUser(username="admin", role="admin"))
    assert not auth.is_authorized_hitl_task(
        assigned_users=ids, user=SimpleAuthManagerUser(username="mallory", role="admin")
    )


def test_make_airflow_never_prints_or_logs_the_password():
    script = (Path(__file__).resolve().parents[2] / "scripts" / "airflow.sh").read_text()
    assert "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script and "write_secret" in script
    assert "json.load(open" not in script  # the old line that echoed every password
    env = (Path(__file__).resolve().parents[2] / "scripts" / "env.sh").read_text()
    assert "umask 077" in env


def test_daily_graph_reads_in_stages_with_the_task_ids_the_docs_use(dagbag):
    dag = dagbag.dags["freshrec_daily"]
    groups = {tid: t.task_group.group_id for tid, t in dag.task_dict.items()}
    assert groups["validate_events"] == "data" and groups["train_challenger"] == "model"
    assert groups["approve_promotion"] == groups["promote_champion"] == "ship"
    assert {"ingest_events", "pull_champion", "approve_promotion", "promote_champion"} <= set(dag.task_dict)


@pytest.mark.parametrize(
    ("logical", "day", "run_type", "outcome"),
    [
        ("2026-11-30", None, "manual", "fail"),  # the trigger form's default logical date: today
        ("1998-03-01", "2026-11-30", "manual", "fail"),
        ("1997-09-19", None, "manual", "fail"),  # the day before the first data day
        ("2026-11-30", None, "scheduled", "skip"),  # unpaused past the window: skipped, not red
        ("1998-03-01", "1998-02-30", "manual", "fail"),  # not a calendar day
        ("1998-04-22", None, "scheduled", "1998-04-22"),  # the last data day runs
        ("2026-11-30", "1997-09-20", "manual", "1997-09-20"),  # a day Param inside the window wins
    ],
)
def test_a_day_outside_the_data_window_stops_the_run_at_once(dagbag, logical, day, run_type, outcome, caplog):
    """Never retried, never a green run with nothing done: the first task says which day and which window,
    in its own log lines (Airflow shows the exception only in the collapsed "Post Execute" group)."""
    import datetime as dt
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    sys.path.insert(0, str(DAGS))
    import freshrec_daily
    from airflow.utils.types import DagRunType

    context = {
        "params": {"day": day},
        "logical_date": dt.datetime.fromisoformat(logical).replace(tzinfo=dt.UTC),
        "dag_run": SimpleNamespace(run_type=DagRunType(run_type)),  # what the task context holds
    }
    if outcome in ("fail", "skip"):
        exc = AirflowFailException if outcome == "fail" else AirflowSkipException
        with pytest.raises(exc, match=r"outside the data window 1997-09-20 \.\. 1998-04-22|not a valid|day"):
            freshrec_daily._day(context)
        said = [r.message for r in caplog.records if r.name == "freshrec"]
        assert said and said[0].startswith("skipped: " if outcome == "skip" else "refused: "), caplog.text
    else:
        assert freshrec_daily._day(context) == outcome


@pytest.mark.slow
def test_a_manual_run_for_today_fails_fast_instead_of_going_green(airflow_db, s3_env, write_params, params, webhook):
    """What the trigger form does by default (logical date = now): a failed run, in seconds, no retries; the
    alert webhook is told which task failed, and where to look."""
    import datetime as dt
    import time

    from airflow.dag_processing.dagbag import DagBag

    write_params(params)
    daily = DagBag(dag_folder=str(DAGS)).dags["freshrec_daily"]
    t0 = time.monotonic()
    dr = daily.test(logical_date=dt.datetime(2026, 11, 30, tzinfo=dt.UTC))
    states = {ti.task_id: (ti.state, ti.try_number) for ti in dr.get_task_instances()}
    assert dr.state == "failed" and time.monotonic() - t0 < 120
    assert states["wait_for_landing"] == ("failed", 1), states  # one try: nothing to wait or retry for
    assert states["promote_champion"][0] == "upstream_failed"
    (alert,) = webhook.of("failed")  # one message for the day, naming what failed
    assert alert["freshrec"]["dag_id"] == "freshrec_daily" and alert["freshrec"]["day"] == "2026-11-30"
    assert alert["text"].startswith("freshrec: freshrec_daily 2026-11-30: ")
    assert " failed (after its retries): " in alert["text"]
    assert "wait_for_landing" in alert["freshrec"]["task_id"]
    assert "/dags/freshrec_daily/runs/" in alert["freshrec"]["url"]


def test_a_refusal_that_names_its_cause_fails_for_good_and_io_errors_retry():
    """A FreshrecError (bad settings, a missing input, a failed check) is the same on every retry: fail
    now. An infrastructure error (S3 unreachable) is left to Airflow's retries."""
    from airflow.sdk.exceptions import AirflowFailException

    sys.path.insert(0, str(DAGS))
    import freshrec_daily

    from tasks.store import MissingInput

    def missing():
        raise MissingInput("runs/date=1998-03-01/challenger is not in the object store")

    def unreachable():
        raise ConnectionError("S3 endpoint unreachable")

    with pytest.raises(AirflowFailException, match="MissingInput: runs/date=1998-03-01/challenger"):
        freshrec_daily.refusal_fails_for_good(missing)
    with pytest.raises(ConnectionError):
        freshrec_daily.refusal_fails_for_good(unreachable)


def test_no_noise_from_code_that_is_not_ours():
    """Parsing the DAG file warns of nothing (the provider's sensor import warned of a deprecation, before
    the waits moved to the triggerer), and the Airflow CLI no longer warns that graphviz is missing at every
    call (issue 30). In fresh processes: a warning is shown once per process."""
    parse = [sys.executable, "-W", "always", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import freshrec_daily"]
    out = subprocess.run([*parse, str(DAGS)], capture_output=True, text=True, check=True)
    assert "Warning" not in out.stdout + out.stderr, out.stderr
    out = subprocess.run(["airflow", "version"], capture_output=True, text=True, check=True)
    assert "graphviz" not in out.stdout + out.stderr


def test_the_store_gc_dag_reclaims_nothing_on_its_first_run(
    airflow_db, s3_env, write_params, params, tmp_path, webhook
):
    """A real run of freshrec_store_gc against SeaweedFS: it reads every listing, records the unlisted blob
    as a candidate and deletes nothing (a second run a grace later would). A listing it cannot read fails
    it at once, without a retry, and tells the alert webhook."""
    import datetime as dt

    from airflow.dag_processing.dagbag import DagBag

    from tasks.store import GC_FILE, Store

    write_params(params)
    store = Store.from_env(params)
    unit = tmp_path / "state" / "u"
    unit.mkdir(parents=True)
    for body in (b"v1", b"v2"):  # v1 superseded: unlisted
        (unit / "x").write_bytes(body)
        store.push(tmp_path / "state", "u")
    gc = DagBag(dag_folder=str(DAGS)).dags["freshrec_store_gc"]
    assert gc.max_active_runs == 1 and not gc.catchup
    dr = gc.test(logical_date=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    (ti,) = dr.get_task_instances()
    assert dr.state == "success" and ti.state == "success"
    assert store.read("u", "x") == b"v2" and store._get(f"{store.prefix}/{GC_FILE}") is not None
    listing = store.s3.list_objects_v2(Bucket=store.bucket, Prefix=f"{store.prefix}/blobs/")
    assert len(listing["Contents"]) == 2  # nothing deleted on a first run
    assert webhook.messages == []
    store.s3.put_object(Bucket=store.bucket, Key=f"{store.prefix}/units/bad/UNIT.json", Body=b"<html>")
    dr = gc.test(logical_date=dt.datetime(2026, 12, 2, tzinfo=dt.UTC))
    (ti,) = dr.get_task_instances()
    assert dr.state == "failed" and ti.try_number == 1
    (alert,) = webhook.messages
    assert alert["freshrec"]["task_id"] == "collect_garbage" and alert["freshrec"]["dag_id"] == "freshrec_store_gc"
