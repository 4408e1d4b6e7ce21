"""
### freshrec daily

Keeps the sequential recommender fresh, one UTC day per run (the run's logical date):

1. **wait_for_landing** — the upstream export of day D is in the landing zone (a day that waits is
   deferred to the triggerer: no worker slot, no process per look)
2. **ingest_events** — copy it into `data/raw/events/date=D/` (idempotent)
3. **validate_events** — Great Expectations checkpoint; a bad day is quarantined and the run stops here
4. **pull_champion** — waits (deferred, as above) until day D-1's run has ended, then pulls the champion
   it left (the day's base), sha256-verified; the pointer later moves only from that base
5. **detect_drift** — PSI / Jensen-Shannon / new items / champion NDCG@10 → `skip`, `incremental` or `full`
6. **train_challenger** — on the `gpu` queue when a worker serves it; fine-tunes or retrains
7. **evaluate_challenger** — champion vs challenger on the same holdout, full ranking; quality gate
8. **export_onnx** — fp32 + int8 ONNX with top-K in the graph; parity against torch
9. **benchmark_latency** — p50/p95/p99 torch vs ORT fp32 vs int8; latency gate
10. **approve_promotion** — a person approves in *Required Actions* (evidence in the request); 24 h timeout = reject;
    `FRESHREC_ALERT_WEBHOOK` is told when it starts waiting, and when any task fails for good
11. **promote_champion** — immutable version in S3, manifest with lineage, champion pointer moved last

Every task reads its inputs from the object store and writes its outputs back (`tasks/day.py`),
so any task may run on any worker. `summarize_run` records the day's outcome, which day D+1 waits for.

Params: `auto_approve` (approver recorded as `auto`, for demos and backfills), `force_mode`
(override the drift decision), `day` (run a day other than the logical date), `base` (`live` or a
version: build on another champion than the one day D-1 left).
Backfill (any max-active-runs; days still train in order):
`airflow backfill create --dag-id freshrec_daily --from-date ... --to-date ... --max-active-runs 10`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator, CronDataIntervalTimetable, Param, TaskGroup, dag, task

from tasks.alerts import DayAlert
from tasks.common import APPROVAL_REASON, refusal_fails_for_good, window_pattern
from tasks.settings import settings

TRAIN_QUEUE = settings().train_queue  # `gpu` where a GPU worker listens
TRAIN_POD = Path(__file__).resolve().parent.parent / "docker" / "k8s" / "train-challenger-pod.yaml"
# The data window: the days data exists for. Defaults: the embedded ML-100K replay (days 1997-09-20 ..
# 1998-04-22). With your own data set FRESHREC_START_DATE to its first day and FRESHREC_END_DATE to ""
# (open-ended). A run for a day outside it stops at its first task and says so: a manual trigger
# fails (e.g. the trigger form's default logical date, today), a scheduled run is skipped. The DAG
# itself has no end_date, because Airflow would make a run past it a green run with no task at all.
START_DATE = pendulum.parse(settings().start_date, tz="UTC")
_END = settings().end_date  # the last data day's interval ends here (None: open-ended)
END_DATE = pendulum.parse(_END, tz="UTC") if _END else None
LAST_DAY = (END_DATE - dt.timedelta(days=1)).date() if END_DATE else None  # the data window's last day
APPROVAL_TIMEOUT = dt.timedelta(hours=24)

APPROVAL_BODY = "{{ ti.xcom_pull(task_ids='prepare_approval') }}"
# how often the triggerer looks again while a day waits (tasks/waits.py)
BASE_POKE_SECONDS = settings().poke_seconds
LANDING_WAIT_SECONDS = 6 * 3600
# pull_champion waits for day D-1's run to end (its approval may take up to APPROVAL_TIMEOUT)
BASE_WAIT_SECONDS = 2 * APPROVAL_TIMEOUT.total_seconds() + 6 * 3600


def _train_executor_config() -> dict:
    """With the KubernetesExecutor (FRESHREC_TRAIN_POD=gpu): train_challenger's pod_override, a GPU pod."""
    if settings().train_pod != "gpu":
        return {}
    import yaml
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    return {"pod_override": PodGenerator.deserialize_model_dict(yaml.safe_load(TRAIN_POD.read_text()))}


class RecordedApproval(ApprovalOperator):
    """Airflow's ApprovalOperator with a `reason` field, also leaving the answer (or its absence) in XCom
    `decision` whatever it was: a Reject skips downstream without a return value, and a rejection must be
    on record, with who, when and why."""

    def __init__(self, **kwargs):
        reason = Param(  # optional in the form (a string-only field is required there, Approve disabled)
            None,
            type=["null", "string"],
            maxLength=2000,
            title="Reason",
            description="Why you answer so: required when you reject (what is wrong, what to do), optional when "
            "you approve. Recorded with your name and the time in the promotion history and the run summary.",
        )
        given = kwargs.pop("params", None) or {}  # the DAG's own params come in here (HITL keeps only the task's)
        params = {k: given.get_param(k) for k in given} if hasattr(given, "get_param") else dict(given)
        super().__init__(params={**params, APPROVAL_REASON: reason}, **kwargs)

    def execute_complete(self, context, event):
        from tasks.day import answer_record

        record = answer_record(event)
        if record["who"] and record["chosen_options"] == [self.REJECT] and not record["reason"]:
            self.log.warning("rejected by %s without a reason: the request asks for one", record["who"])
        context["ti"].xcom_push(key="decision", value=record)
        self.log.info("answer: %s by %s at %s; reason: %s", (record["chosen_options"] or ["none"])[0],
                      record["who"], record["responded_at"], record["reason"] or "(none)")  # fmt: skip
        return super().execute_complete(context, event)


class DayWait(BaseOperator):
    """One of the day's waits (tasks/waits.py). `check(context)` runs on a worker and returns (value,
    trigger): trigger None when the day can go on (the task returns value), else the `DayReady` trigger
    the task defers to. While deferred it holds no worker slot and starts no process: the triggerer looks
    every BASE_POKE_SECONDS, and when it fires the task resumes here and checks again. Past `wait_seconds`
    the task fails for good, as a sensor's timeout did."""

    def __init__(self, *, check, wait_seconds: float, **kwargs):
        super().__init__(**kwargs)
        self.check, self.wait_seconds = check, wait_seconds

    def execute(self, context, event: dict | None = None):
        if event:
            self.log.info("the triggerer saw day %s ready after %s s: checking again", event["day"], event["waited_s"])
        value, trigger = self.check(context)
        if trigger is not None:
            self.defer(trigger=trigger, method_name="execute", timeout=dt.timedelta(seconds=self.wait_seconds))
        return value

    def resume_execution(self, next_method, next_kwargs, context):
        from airflow.sdk.exceptions import AirflowFailException, TaskDeferralTimeout

        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout as exc:  # waiting longer cannot help: a retry would only wait again
            raise AirflowFailException(f"still waiting after {self.wait_seconds:.0f} s: {exc}") from exc


def _wait_for_landing(context):
    """Day D is in the landing zone, and the bootstrap's history (which validation compares with) is in
    the object store. The day's first task: it takes the day's params snapshot."""
    from tasks.common import day_str
    from tasks.day import waiting_for
    from tasks.waits import DayReady

    with _scope("wait_for_landing") as (day, params, layout, store, _):
        why = waiting_for("landing", day, params, layout, store)
    if why is None:
        return True, None
    logging.getLogger("freshrec").info("waiting: %s", why)
    return None, DayReady("landing", day_str(day), params, poke_seconds=BASE_POKE_SECONDS)


def _pull_champion(context):
    """Wait until day D-1's run (or, for the first day, the bootstrap) has ended, then pull the champion
    it left (day D's base)."""
    from tasks.common import day_str
    from tasks.day import NotReady
    from tasks.day import pull_champion as pull
    from tasks.registry import registry_from_env
    from tasks.waits import DayReady

    with _scope("pull_champion") as (day, params, layout, store, _):
        override = context["params"]["base"]
        try:
            return pull(day, params, layout, store, registry_from_env(params), override), None
        except NotReady as exc:
            logging.getLogger("freshrec").info("waiting: %s", exc)
    return None, DayReady("base", day_str(day), params, override, BASE_POKE_SECONDS)


def _approvers() -> list[dict] | None:
    """`promote.approvers` in params.yaml as HITL assigned users: only they can answer the approval
    (Airflow checks it on every answer, UI and REST alike). Read at parse time: a small YAML file."""
    from tasks.params import load_params

    ids = load_params()["promote"].get("approvers") or []
    return [{"id": str(i), "name": str(i)} for i in ids] or None


def _day(context) -> str:
    """The day this run processes: the `day` Param if given, else the logical date; a day outside the
    data window stops the run at once (a manual run fails, a scheduled one is skipped), never retried."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from tasks.common import FreshrecError, day_str, parse_day

    override = context["params"].get("day")
    if override:
        try:
            day = parse_day(override)
        except FreshrecError as exc:  # e.g. 1998-02-30: retrying cannot fix it
            logging.getLogger("freshrec").error("refused: %s", exc)
            raise AirflowFailException(str(exc)) from exc
    elif context.get("logical_date") is None:
        raise AirflowFailException("this run has no logical date: trigger it with one, or set the `day` Param")
    else:
        day = context["logical_date"].date()
    first, last = START_DATE.date(), LAST_DAY
    if day < first or (last is not None and day > last):
        why = (
            f"day {day} is outside the data window {first} .. {last or '(open-ended)'} "
            "(FRESHREC_START_DATE / FRESHREC_END_DATE): no data lands for it. Trigger a day inside it (the "
            "logical date, or the `day` Param), or set the window for your data (docs/operations.md)."
        )
        run_type = getattr(context.get("dag_run"), "run_type", "")
        scheduled = str(getattr(run_type, "value", run_type)).lower() == "scheduled"  # DagRunType.SCHEDULED
        # said in the task's own log lines first: Airflow shows the exception only in its "Post Execute" group
        logging.getLogger("freshrec").warning("%s: %s", "skipped" if scheduled else "refused", why)
        raise (AirflowSkipException if scheduled else AirflowFailException)(why)
    return day_str(day)


def _ctx():
    from airflow.sdk import get_current_context

    from tasks.common import parse_day, quiet_third_party_logs

    quiet_third_party_logs()  # the task log tells freshrec's story, not its libraries' internals
    context = get_current_context()
    return parse_day(_day(context)), context


@contextlib.contextmanager
def _scope(step: str):
    """(day, params, layout, store, context) for one try of `step`: a private working directory on this
    worker (tasks/day.py `task_scope`), so tasks that run at once on one machine never touch each
    other's files; the directory goes when the try ends. `params` are the day's snapshot, taken by its
    first task (a bad params.yaml fails that task at once, naming the key)."""
    from airflow.sdk.exceptions import AirflowFailException

    from tasks.common import FreshrecError
    from tasks.day import FIRST_STEP, day_params, snapshot_params, task_scope
    from tasks.params import load_params

    day, context = _ctx()
    try:
        current = load_params()  # validated: tasks/params.py
    except FreshrecError as exc:  # retrying cannot fix a bad params.yaml
        raise AirflowFailException(str(exc)) from exc
    with task_scope(step, day, current) as (layout, store):
        if step == FIRST_STEP:
            refresh, run_id = context["params"]["refresh_params"], context["run_id"]
            params = snapshot_params(day, current, layout, store, refresh, by=f"run {run_id}")
        else:
            params = refusal_fails_for_good(day_params, day, layout, store)
        yield day, params, layout, store, context


def _api_url() -> str:
    """The API server's address as the approver's browser reaches it: links to the day's reports."""
    from airflow.configuration import conf

    from tasks.reports import api_url

    return api_url(conf.get("api", "base_url", fallback=None), conf.get("api", "host", fallback=None),
                   conf.get("api", "port", fallback=None))  # fmt: skip


def _options(context, **choices):
    """The operator's choices for this run (the DAG's Params) as the day's step API takes them."""
    from tasks.pipeline import DayOptions

    p = context["params"]
    force = None if p["force_mode"] == "auto" else p["force_mode"]
    return DayOptions(
        force_mode=force, accept_checks=tuple(p["accept_checks"]), replace_delivery=p["replace_delivery"],
        api=_api_url(), **choices,
    )  # fmt: skip


def _run(step: str, **choices):
    """Run step `step` of the day (tasks/day.py): its declared inputs pulled from the object store into
    the try's own working directory, the step, its outputs pushed back; a refusal fails for good."""
    from tasks.pipeline import run_day_step

    with _scope(step) as (day, params, layout, store, context):
        return refusal_fails_for_good(run_day_step, step, day, params, layout, store, _options(context, **choices))


@dag(
    dag_id="freshrec_daily",
    # a run covers one UTC day [D, D+1): logical date D, it starts once D is over (classic interval
    # semantics; a plain "@daily" in Airflow 3 would stamp the run with D+1, the day just begun)
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,  # backfills are explicit: `airflow backfill create`
    max_active_runs=1,  # days build on each other's champion
    doc_md=__doc__,
    tags=["freshrec", "ml"],
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=2), "owner": "ml-platform"},
    params={
        "auto_approve": Param(False, type="boolean", description="Promote without a human; approver = auto."),
        "force_mode": Param(
            "auto",
            enum=["auto", "skip", "incremental", "full"],
            description="Override the drift decision (e.g. `full` to retrain from scratch).",
        ),
        "day": Param(  # checked where the run is triggered (form, REST, CLI): a refusal takes no worker slot
            None,
            type=["null", "string"],
            format="date",  # a calendar date: 1998-02-30 is refused
            pattern=window_pattern(START_DATE.date(), LAST_DAY),  # inside the data window
            description=f"The day to process instead of the logical date, as YYYY-MM-DD (a calendar date), inside "
            f"the data window {START_DATE.date()} .. {LAST_DAY or '(open-ended)'} (FRESHREC_START_DATE / "
            "FRESHREC_END_DATE).",
        ),
        "base": Param(
            None,
            type=["null", "string"],
            description="Build on this champion instead of the one day D-1's run left: `live` (the pointer now) "
            "or a version id. Only to break the chain knowingly, e.g. after a rollback.",
        ),
        "replace_delivery": Param(
            False,
            type="boolean",
            description="Take a re-delivery of the day with other bytes although days were already trained on the "
            "earlier delivery (both stay kept; the replacement is recorded). Re-run the later days afterwards.",
        ),
        "refresh_params": Param(
            False,
            type="boolean",
            description="A day runs under the params its first task took (runs/date=D/params.json). Set this to "
            "re-read params.yaml for a day that already started; clear the run from wait_for_landing. The "
            "replacement is recorded in the snapshot.",
        ),
        "accept_checks": Param(
            [],
            type="array",
            description="Validation checks you reviewed and accept for this run only (e.g. row_count for a real "
            "traffic spike); recorded in the report.",
        ),
    },
)
def freshrec_daily():
    @task
    def ingest_events() -> dict:
        from dataclasses import asdict

        return asdict(_run("ingest_events"))

    @task(retries=0)
    def validate_events() -> dict:
        from dataclasses import asdict

        return asdict(_run("validate_events"))

    @task
    def detect_drift() -> dict:
        report = _run("detect_drift")
        return {"decision": report["decision"], "reasons": report["reasons"]}

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def should_train(drift_report: dict) -> bool:
        """`skip` ends the run here: the champion stays, nothing to approve."""
        return drift_report["decision"] != "skip"

    @task(queue=TRAIN_QUEUE, executor_config=_train_executor_config())
    def train_challenger() -> dict:
        """Each checkpoint is published as it is written: a retry elsewhere resumes from the last one."""
        from dataclasses import asdict

        return asdict(_run("train_challenger"))

    @task(retries=0)
    def evaluate_challenger() -> dict:
        return _run("evaluate_challenger")["gate"]

    @task
    def export_onnx() -> dict:
        report = _run("export_onnx")
        return {"fp32": report["fp32"], "int8": report["int8"]}

    @task(retries=0)
    def benchmark_latency() -> dict:
        return _run("benchmark_latency")["gate"]

    @task
    def prepare_approval() -> str:
        """The evidence a person approves on, as markdown (rendered into the approval request)."""
        return _run("prepare_approval")

    @task.branch
    def choose_approval() -> str:
        _, context = _ctx()
        return "promote_champion" if context["params"]["auto_approve"] else "approve_promotion"

    @task(trigger_rule="none_failed_min_one_success", retries=0)
    def promote_champion() -> dict:
        from airflow.sdk import get_current_context

        from tasks.day import approver_of

        context = get_current_context()
        answer = context["ti"].xcom_pull(task_ids="approve_promotion")
        approver, reason = refusal_fails_for_good(approver_of, answer, context["params"]["auto_approve"])
        return _run("promote_champion", approver=approver, reason=reason)

    @task(trigger_rule="one_failed", retries=0, on_failure_callback=[DayAlert("failed")])
    def fail_run_if_any_failed() -> None:
        """The summary must not turn a failed day green: any failure fails the run. It runs once, as soon as
        a step fails: its failure tells FRESHREC_ALERT_WEBHOOK which steps failed (one message a day)."""
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("a step of this day failed: see the failed task's log and the run summary")

    @task(trigger_rule="all_done")
    def summarize_run() -> dict:
        """The day's row, and its outcome: the champion standing after it, which day D+1 builds on. A day
        whose challenger was rejected (or not answered in time) ends this task *skipped*, once all is on
        record: in the grid it differs from a promoted day, and the run still succeeds."""
        from airflow.sdk.exceptions import AirflowSkipException

        from tasks.day import run_step
        from tasks.pipeline import summarize_day

        with _scope("summarize_run") as (day, params, layout, store, context):
            ti = context["ti"]
            states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
            answer = ti.xcom_pull(task_ids="approve_promotion", key="decision")
            evidence = ti.xcom_pull(task_ids="prepare_approval")
            row = refusal_fails_for_good(
                run_step, "summarize_run", day, params, layout, summarize_day,
                day, params, layout, states, answer, evidence, _api_url(), APPROVAL_TIMEOUT, store=store,
            )  # fmt: skip
        if row["outcome"]["status"] == "rejected":
            promo = row.get("promotion") or {}
            why = f"not promoted: rejected by {promo.get('approver')}: {promo.get('reason')}"
            logging.getLogger("freshrec").warning("%s", why)
            ti.xcom_push(key="summary", value=row)  # the row a promoted day returns
            raise AirflowSkipException(f"{why} (summary and outcome written; skipped marks the day in the grid)")
        return row

    # the graph in three stages; task ids stay as they were (the docs and the REST API use them)
    with TaskGroup("data", prefix_group_id=False, tooltip="the day's events: landed, ingested, validated"):
        wait = DayWait(task_id="wait_for_landing", check=_wait_for_landing, wait_seconds=LANDING_WAIT_SECONDS)
        steps = [wait, ingest_events(), validate_events()]
    with TaskGroup("model", prefix_group_id=False, tooltip="base champion, drift, training, evaluation"):
        steps += [
            DayWait(task_id="pull_champion", check=_pull_champion, wait_seconds=BASE_WAIT_SECONDS),
            drift := detect_drift(),
            should_train(drift),
            train_challenger(),
            evaluate_challenger(),
        ]
    with TaskGroup("ship", prefix_group_id=False, tooltip="ONNX, latency, approval, promotion"):
        steps += [export_onnx(), benchmark_latency(), prepare_approval(), branch := choose_approval()]
        approve = RecordedApproval(
            task_id="approve_promotion",
            subject="freshrec: promote the challenger for {{ params.day or ds }}?",
            body=APPROVAL_BODY,
            defaults=["Reject"],  # no answer within the timeout means no promotion
            assigned_users=_approvers(),
            response_timeout=APPROVAL_TIMEOUT,
            notifiers=[DayAlert("approval")],  # the approvers hear of it (FRESHREC_ALERT_WEBHOOK)
            retries=0,
        )
        promoted = promote_champion()
    for upstream, downstream in itertools.pairwise(steps):
        upstream >> downstream
    branch >> approve >> promoted
    branch >> promoted
    summary = summarize_run()
    [drift, promoted] >> summary
    [*steps, approve, promoted, summary] >> fail_run_if_any_failed()


freshrec_daily()
