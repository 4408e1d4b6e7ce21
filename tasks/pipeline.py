"""The day's steps as one API: which function each step of day D runs, with which arguments, in which
order. The DAG, the bootstrap, the operator CLIs and the tests call `run_day_step`; the state machine it
runs inside (what each step reads and writes, the champion a day builds on, the rules) is tasks/day.py.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.common import FreshrecError, Layout, ValidationFailed
from tasks.day import (
    checkpoint_sink,
    day_status,
    forget_history_after,
    record_outcome,
    rejection_of,
    run_step,
    trained_days,
)
from tasks.store import Store

SEQUENCE = (
    "ingest_events", "validate_events", "pull_champion", "detect_drift", "train_challenger", "evaluate_challenger",
    "export_onnx", "benchmark_latency", "prepare_approval", "promote_champion", "summarize_run",
)  # fmt: skip


@dataclass(frozen=True)
class DayOptions:
    """The operator's choices for one run of a day (the DAG's Params)."""

    force_mode: str | None = None  # detect_drift: override the decision (skip | incremental | full)
    accept_checks: tuple[str, ...] = ()  # validate_events: checks reviewed and accepted for this run
    replace_delivery: bool = False  # ingest_events: take a re-delivery with other bytes
    approver: str = ""  # promote_champion: who approved, and why
    reason: str = ""
    api: str | None = None  # links in the evidence and the summary point at this API server
    on_checkpoint: Callable[[Path], None] | None = None  # train_challenger: publish each checkpoint
    progress: bool = True  # train_challenger: a progress bar in the log


def _promote(day: dt.date, params: dict, layout: Layout, options: DayOptions):
    from tasks.promotion import run as promote

    if not options.approver:
        raise FreshrecError("promote_champion needs an approver (an approval answer, or auto_approve)")
    return promote(day, params, layout, options.approver, options.reason)


def _ingest(day: dt.date, params: dict, layout: Layout, store: Store, options: DayOptions):
    from tasks import ingest

    res = ingest.run(day, params, layout, trained_days(store, day), options.replace_delivery)
    if res.status != "unchanged":  # a late day or a replaced delivery: later days' history units are stale
        forget_history_after(store, layout, day)
    return res


def _validate(day: dt.date, params: dict, layout: Layout, store: Store, options: DayOptions):
    from tasks import validate

    try:
        return validate.run(day, params, layout, options.accept_checks)
    except ValidationFailed:  # quarantined (the worker's later history units dropped): the store's go too
        forget_history_after(store, layout, day)
        raise


def _train(day: dt.date, params: dict, layout: Layout, store: Store, options: DayOptions):
    from tasks import versioning

    on_checkpoint = options.on_checkpoint or checkpoint_sink(day, params, layout, store)
    return versioning.train_and_version(day, params, layout, on_checkpoint=on_checkpoint, progress=options.progress)


def _module(name: str):
    """A step's module, imported when the step runs: a task imports what its step needs and no more (torch and
    transformers cost about 5 s of every task that imports them, ingest's and promote's included, before)."""
    return importlib.import_module(f"tasks.{name}")


def step_call(name: str, day: dt.date, params: dict, layout: Layout, store: Store, options: DayOptions):
    """Run step `name` of day D on `layout` (its inputs already pulled): the one place each step's function
    and arguments are named. pull_champion and summarize_run have their own entry points."""
    calls = {
        "ingest_events": lambda: _ingest(day, params, layout, store, options),
        "validate_events": lambda: _validate(day, params, layout, store, options),
        "detect_drift": lambda: _module("drift").run(day, params, layout, options.force_mode),
        "train_challenger": lambda: _train(day, params, layout, store, options),
        "evaluate_challenger": lambda: _module("evaluate").run(day, params, layout),
        "export_onnx": lambda: _module("export").run(day, params, layout),
        "benchmark_latency": lambda: _module("benchmark").run(day, params, layout),
        "prepare_approval": lambda: _module("approval").evidence_markdown(day, layout, params["drift"], options.api),
        "promote_champion": lambda: _promote(day, params, layout, options),
    }
    if name not in calls:
        raise FreshrecError(f"unknown step {name!r}: the steps are {SEQUENCE}")
    return calls[name]()


def run_day_step(name: str, day: dt.date, params: dict, layout: Layout, store: Store, options: DayOptions):
    """Step `name` of day D through the data plane: declared inputs pulled, the step, outputs pushed."""
    return run_step(name, day, params, layout, step_call, name, day, params, layout, store, options, store=store)


def summarize_day(
    day: dt.date, params: dict, layout: Layout, states: dict[str, str], answer: dict | None,
    evidence: str | None, api: str | None, timeout: dt.timedelta,
) -> dict:  # fmt: skip
    """summarize_run: the day's row, a rejection (or a timeout) on record like a promotion (who, when, why,
    the evidence digest), and the outcome day D+1 builds on."""
    from tasks.promotion import reject
    from tasks.registry import registry_from_env
    from tasks.summary import summarize

    row = summarize(day, layout, api)
    status = day_status(row["decision"], states)
    if status == "rejected":
        who, why = rejection_of(answer, timeout)
        reject(day, params, layout, who, why, evidence, answered_at=(answer or {}).get("responded_at"))
        row = summarize(day, layout, api)  # the summary names the rejection
    row["outcome"] = record_outcome(day, layout, registry_from_env(params), status)
    return row
