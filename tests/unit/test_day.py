"""Which champion a day builds on (tasks/day.py), against a real SeaweedFS: the one day D-1's run
left; a day that never resolved a base (quarantined early) passes on the day before's; a day whose
predecessor has not ended waits; the `base` Param overrides knowingly."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tasks.common import Layout, write_json
from tasks.day import BASE, OUTCOME, NotReady, resolve_base
from tasks.store import Store

D = dt.date(2024, 1, 10)


@pytest.fixture
def store(s3_env, params):
    return Store.from_env(params)


def _outcome(store, root, day, **fields):
    layout = Layout(root)
    write_json(OUTCOME.path(layout, day), {"day": str(day), "status": "x", **fields})
    store.push(root, str(OUTCOME.path(layout, day).relative_to(root)))


def _version(registry, tmp_path, v):
    (tmp_path / v).mkdir()
    (tmp_path / v / "items.json").write_text(json.dumps([v]))
    registry.publish(v, {"items.json": tmp_path / v / "items.json"}, {})
    registry.set_champion(v, "t", "t")


def test_only_the_bootstrap_builds_on_nothing(store, registry, tmp_path):
    """With no champion and no history, the bootstrap's own day is the first model; a daily day waits
    for the bootstrap's outcome instead of starting a full training of its own."""
    assert resolve_base(D, store, Layout(tmp_path / "w"), registry, first=True)[0] is None
    with pytest.raises(NotReady, match="waits for the bootstrap"):
        resolve_base(D, store, Layout(tmp_path / "w"), registry)


def test_a_base_saved_by_a_run_that_should_have_waited_is_not_reused(store, registry, tmp_path):
    """A daily day whose earlier run recorded `base: null` (it did not wait for the bootstrap) waits now and
    then builds on the bootstrap's champion; the bootstrap's own `base: null` (marked first) is kept."""
    layout = Layout(tmp_path / "up")
    write_json(BASE.path(layout, D), {"day": str(D), "base": None, "why": "no champion yet"})
    store.push(layout.root, str(BASE.path(layout, D).relative_to(layout.root)))
    with pytest.raises(NotReady):
        resolve_base(D, store, Layout(tmp_path / "w"), registry)
    _version(registry, tmp_path, "2024-01-09-boot")
    _outcome(store, tmp_path / "up", D - dt.timedelta(days=1), champion_after="2024-01-09-boot")
    assert resolve_base(D, store, Layout(tmp_path / "w2"), registry)[0] == "2024-01-09-boot"

    first = D + dt.timedelta(days=30)  # the bootstrap's day, re-run after a kill: no champion yet, no chain
    write_json(BASE.path(layout, first), {"day": str(first), "base": None, "why": "first", "first": True})
    store.push(layout.root, str(BASE.path(layout, first).relative_to(layout.root)))
    assert resolve_base(first, store, Layout(tmp_path / "w3"), registry) == (
        None,
        "as this day's earlier run resolved it (first)",
    )


def test_base_is_the_champion_the_day_before_left(store, registry, tmp_path):
    _version(registry, tmp_path, "2024-01-08-aaaa")
    _version(registry, tmp_path, "2024-01-12-cccc")  # a later day is live: it does not matter
    _outcome(store, tmp_path / "up", D - dt.timedelta(days=2), champion_after="2024-01-08-aaaa")
    _outcome(store, tmp_path / "up", D - dt.timedelta(days=1), inherit=True)  # quarantined, never resolved
    version, why = resolve_base(D, store, Layout(tmp_path / "w"), registry)
    assert version == "2024-01-08-aaaa" and "2024-01-08" in why


def test_a_day_waits_while_the_day_before_runs(store, registry, tmp_path):
    _version(registry, tmp_path, "2024-01-08-aaaa")
    with pytest.raises(NotReady, match="2024-01-09 has no recorded outcome"):
        resolve_base(D, store, Layout(tmp_path / "w"), registry)
    assert resolve_base(D, store, Layout(tmp_path / "w"), registry, "live")[0] == "2024-01-08-aaaa"


def test_the_approvers_answer_is_kept_in_their_words():
    """The reason field of the approval request reaches the promotion history: on a rejection it is the
    why; on an approval it follows "approved in Airflow"; a blank reject says the reason is missing."""
    import datetime as dt

    from tasks.day import answer_record, approver_of, rejection_of

    at = dt.datetime(2026, 12, 4, 9, 30, tzinfo=dt.UTC)
    event = {"chosen_options": ["Reject"], "params_input": {"reason": "  cold-start HR halved \n"},
             "responded_at": at, "responded_by_user": {"id": "7", "name": "ana"}}  # fmt: skip
    record = answer_record(event)
    assert record == {"chosen_options": ["Reject"], "responded_by_user": {"id": "7", "name": "ana"}, "who": "ana",
                      "responded_at": "2026-12-04T09:30:00+00:00", "reason": "cold-start HR halved"}  # fmt: skip
    assert rejection_of(record, dt.timedelta(hours=24)) == ("ana", "cold-start HR halved")
    assert answer_record(record) == record  # the kept record reads back the same
    blank = {**record, "reason": ""}
    assert rejection_of(blank, dt.timedelta(hours=24))[1].startswith("rejected in Airflow without a reason")
    assert rejection_of(None, dt.timedelta(hours=24))[0].startswith("nobody")
    approve = {**event, "chosen_options": ["Approve"], "params_input": {"reason": "gate passed, p99 fine"}}
    assert approver_of(approve, False) == ("ana", "approved in Airflow: gate passed, p99 fine")
    assert approver_of({**approve, "params_input": {}}, False) == ("ana", "approved in Airflow")
    assert len(answer_record({**event, "params_input": {"reason": "x" * 5000}})["reason"]) == 2000
