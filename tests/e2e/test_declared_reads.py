"""Every read declared (tasks/day.py `STEPS`): each step of a real day runs on an empty working directory
that holds only what its declared inputs pulled, while an audit hook records every file the step opens
and every folder it lists under that directory. A path that no declared read or write covers is an
undeclared read: on a fresh worker it would be missing, on an old one stale. The catalogue-format check
needs the previous catalogue, so on an empty disk a catalogue that changes format is still refused."""

from __future__ import annotations

import datetime as dt
import os
import sys

import pandas as pd
import pytest

from tasks.common import Layout, ValidationFailed
from tasks.day import PARAMS, STEPS, Units, day_params, pull_champion, run_step, snapshot_params
from tasks.pipeline import SEQUENCE, DayOptions, run_day_step, summarize_day
from tasks.store import Store

pytestmark = [pytest.mark.slow]
_AUDIT: dict = {"root": None, "seen": set()}


def _hook(event: str, args: tuple) -> None:
    root = _AUDIT["root"]
    if root is None or event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    path = args[0]
    if path is None or isinstance(path, int):
        return
    full = os.path.abspath(os.fsdecode(path))
    if full.startswith(root + os.sep):
        rel = full[len(root) + 1 :]
        if not any(part.startswith(".") for part in rel.split(os.sep)):  # scratch (atomic writes), never data
            _AUDIT["seen"].add((rel, event != "open"))


sys.addaudithook(_hook)  # process-wide and permanent; it records only while _AUDIT["root"] is set


def _covered(specs, layout: Layout, day: dt.date, params: dict, rel: str, listing: bool) -> bool:
    from tasks.units import day_keep, since_name

    for spec in specs:
        if isinstance(spec, Units):
            parent = str(spec.parent(layout).relative_to(layout.root))
            if rel == parent:
                return True
            child, _, inner = rel[len(parent) + 1 :].partition("/")
            since = spec.since.parent(layout) if spec.since else None
            bound = since_name(spec, day, [p.name for p in since.iterdir()] if since and since.is_dir() else [])
            if (
                rel.startswith(parent + "/")
                and day_keep(spec, day, params, bound)(child)
                and (not spec.member or inner == spec.member)
            ):
                return True
        else:
            unit = str(spec.path(layout, day).relative_to(layout.root))
            if rel == unit or rel.startswith(unit + "/"):
                return True
    return False


def _audited(name: str, layout: Layout, day: dt.date, params: dict, fn, *args, **kwargs):
    _AUDIT["root"], _AUDIT["seen"] = str(layout.root.resolve()), set()
    try:
        result = fn(*args, **kwargs)
    finally:
        _AUDIT["root"] = None
    step = STEPS[name]
    undeclared = sorted(
        rel
        for rel, listing in _AUDIT["seen"]
        if not _covered((*step.reads, *step.writes), layout, day, params, rel, listing)
    )
    return result, undeclared


def test_every_step_of_a_day_reads_only_what_it_declares(bootstrapped, registry, tmp_path):
    from tasks import replay

    params, day = bootstrapped["params"], bootstrapped["day1"]
    params["evaluate"]["max_ndcg_drop"] = 1.0  # tiny models: every gate passes, every step runs
    store = Store.from_env(params)
    replay.run(day, params)
    snapshot_params(day, params, Layout(tmp_path / "first"), store)
    options = DayOptions(approver="test", reason="declared reads")
    found = {}
    for i, name in enumerate(SEQUENCE):
        layout = Layout(tmp_path / f"{i}-{name}")  # an empty disk: only the declared inputs arrive
        assert day_params(day, layout, store) == params
        if name == "pull_champion":
            _, found[name] = _audited(name, layout, day, params, pull_champion, day, params, layout, store, registry)
        elif name == "summarize_run":
            states = dict.fromkeys(SEQUENCE, "success")
            _, found[name] = _audited(
                name, layout, day, params, run_step, name, day, params, layout, summarize_day,
                day, params, layout, states, None, None, None, dt.timedelta(hours=1), store=store,
            )  # fmt: skip
        else:
            _, found[name] = _audited(
                name, layout, day, params, run_day_step, name, day, params, layout, store, options
            )
    assert PARAMS.writer == "wait_for_landing"
    assert {k: v for k, v in found.items() if v} == {}, "steps read files they do not declare"
    assert registry.pointer()[0]["version"].startswith(str(day))


def test_a_catalogue_that_changes_format_is_refused_on_an_empty_disk(bootstrapped, tmp_path):
    """The previous catalogue is a declared input: validation on a fresh worker compares with it (before,
    a fresh worker skipped the format check without a word, and an old one compared with its stale copy)."""
    from tasks import replay
    from tasks.landing import ITEMS_FILE
    from tasks.replay import landing_path

    params, day = bootstrapped["params"], bootstrapped["day1"]
    store = Store.from_env(params)
    replay.run(day, params)
    items_file = landing_path(tmp_path / "landing", day) / ITEMS_FILE
    items = pd.read_parquet(items_file)
    items["item_id"] = pd.to_numeric(items["item_id"], errors="coerce").fillna(0).astype("int64")  # ids as numbers
    items.to_parquet(items_file)
    options = DayOptions()
    snapshot_params(day, params, Layout(tmp_path / "first"), store)
    run_day_step("ingest_events", day, params, Layout(tmp_path / "w1"), store, options)
    with pytest.raises(ValidationFailed, match=r"items_format|changed format"):
        run_day_step("validate_events", day, params, Layout(tmp_path / "w2"), store, options)
