"""Which champion a day builds on (tasks/day.py), against a real SeaweedFS: the one day D-1's run
left; a day that never resolved a base (quarantined early) passes on the day before's; a day whose
predecessor has not ended waits; the `base` Param overrides knowingly."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tasks.common import Layout, write_json
from tasks.day import OUTCOME, NotReady, resolve_base
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


def test_first_day_has_no_base(store, registry, tmp_path):
    assert resolve_base(D, store, Layout(tmp_path / "w"), registry)[0] is None


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
