"""Cross-day replays: events an earlier day already brought, sent again as they were or re-stamped, found
through the key index (tasks/event_keys.py) under the dataset's event key (MovieLens: user_id, item_id)."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pytest

from tasks.common import ValidationFailed, read_json
from tasks.event_keys import KEYS_FILE, KeyIndex
from tasks.replay import EVENTS_FILE
from tasks.validate import REPORT_FILE, run, validate_day
from tests.data.conftest import DAY, land_days, resend

EARLIER = DAY - dt.timedelta(days=2)


def _with_earlier(layout, n: int, restamp: bool):
    earlier = pd.read_parquet(layout.raw(EARLIER) / EVENTS_FILE).head(n)

    def make(df):
        again = (
            earlier.assign(event_ts=df["event_ts"].iloc[0] + pd.to_timedelta(range(n), unit="s"))
            if restamp
            else earlier
        )
        return pd.concat([df, again], ignore_index=True)

    return make


@pytest.mark.parametrize("restamp", [False, True], ids=["as_sent", "re_stamped"])
def test_events_of_an_earlier_day_sent_again_are_refused_naming_that_day(restamp, landed, layout, params):
    resend(landed, layout, DAY, _with_earlier(layout, 20, restamp))
    says = rf"replayed_events .*20 events already ingested on 1 earlier day \({EARLIER} \(20\)\) under the event key"
    with pytest.raises(ValidationFailed, match=says + r" \(user_id, item_id\)"):
        run(DAY, params, layout)
    report = read_json(layout.quarantine(DAY) / REPORT_FILE)
    assert report["replays"] == {
        "key": ["user_id", "item_id"],
        "rows": 20,
        "days": 1,
        "earlier_days": {str(EARLIER): 20},
    }


def test_a_passed_day_writes_its_index_and_the_next_day_reads_it_not_the_history(ml100k, landed, layout, params):
    """Day D's index holds every key through D; D+1 finds a replay of D-2's events with D-2's partition gone
    from this disk: the index, one file, is what it read."""
    assert run(DAY, params, layout).passed
    index = KeyIndex.load(layout.index("event_keys", DAY) / KEYS_FILE)
    rows = sum(len(pd.read_parquet(layout.raw(DAY - dt.timedelta(days=b)) / EVENTS_FILE)) for b in range(4))
    assert len(index) == rows  # MovieLens keys are unique across days
    nxt = DAY + dt.timedelta(days=1)
    land_days(ml100k, landed, layout, nxt, 0)
    replayed = pd.read_parquet(layout.raw(EARLIER) / EVENTS_FILE).head(5)
    for back in (1, 2, 3):
        shutil.rmtree(layout.raw(DAY - dt.timedelta(days=back)))
    resend(landed, layout, nxt, lambda df: pd.concat([df, replayed.assign(event_ts=df["event_ts"].iloc[0])]))
    with pytest.raises(ValidationFailed, match=rf"5 events already ingested on 1 earlier day \({EARLIER} \(5\)\)"):
        run(nxt, params, layout)


def test_a_re_run_of_a_day_is_not_a_replay_of_itself(landed, layout, params):
    assert run(DAY, params, layout).passed
    assert run(DAY, params, layout).passed
    assert validate_day(DAY, layout, params["validate"]).replays == {}


def test_the_policy_can_warn_and_a_dataset_without_a_key_is_not_checked(landed, layout, params):
    resend(landed, layout, DAY, _with_earlier(layout, 7, restamp=True))
    params["validate"]["policy"]["replayed_events"] = "warn"
    res = run(DAY, params, layout)
    assert [w["check"] for w in res.warnings if w["check"] == "replayed_events"] and res.replays["rows"] == 7
    params["validate"]["event_key"] = []
    params["validate"]["policy"].pop("replayed_events")
    assert run(DAY, params, layout).replays == {}
