"""Values valid one by one but wrong together: the day's distribution held against its trailing days
(tasks/profile.py). Real ML-100K days; each bad day passes every row-level check."""

from __future__ import annotations

import datetime as dt

import pytest

from tasks.common import ValidationFailed, read_json
from tasks.validate import REPORT_FILE, run, validate_day
from tests.data.conftest import land_days, resend

DAY = dt.date(1997, 10, 6)  # 12 real days before it: enough for a band (validate.profile_min_days 7)


@pytest.fixture
def history(ml100k, tmp_path, layout):
    land_days(ml100k, tmp_path / "landing", layout, DAY, 12)
    return tmp_path / "landing"


def test_a_real_day_passes_with_its_profile_in_the_report(history, layout, params):
    res = validate_day(DAY, layout, params["validate"])
    assert res.passed, res.failures
    assert not [w for w in res.warnings if w["check"].startswith("distribution_")], res.warnings
    assert res.profile["rows"] == res.rows and 0 < res.profile["top_share.rating"] < 1


def test_one_rating_for_almost_every_event_is_blocked_with_its_figures(history, layout, params):
    """Every rating is in 1..5 (the range check passes); 95 % of them are now 3."""
    resend(history, layout, DAY, lambda df: df.assign(rating=df["rating"].where(df.index % 20 == 0, 3.0)))
    with pytest.raises(ValidationFailed, match=r"distribution_rating_top_share .*column rating\): rating share of "
                                               r"the commonest value 0\.9\d+ against a median of 0\.\d+ over the "
                                               r"trailing 12 days: [\d.]+ spreads away"):  # fmt: skip
        run(DAY, params, layout)
    failure = next(f for f in read_json(layout.quarantine(DAY) / REPORT_FILE)["failures"]
                   if f["check"] == "distribution_rating_top_share")  # fmt: skip
    assert failure["band"]["level"] == "block" and failure["band"]["z"] > params["validate"]["profile_block_z"]


def test_one_item_for_most_events_is_blocked(history, layout, params):
    resend(history, layout, DAY, lambda df: df.assign(item_id=df["item_id"].where(df.index % 10 == 0, "50")))
    with pytest.raises(ValidationFailed, match="distribution_item_id_top_share"):
        run(DAY, params, layout)


def test_a_statistic_the_policy_warns_on_reaches_the_approvers_evidence(history, layout, params):
    """A check the policy sets to `warn` (as the user-id statistics are by default: real users rate in
    bursts) lets the day through; the warning, with its figures, is in the report and in the words the
    approval request quotes (`describe`)."""
    from tasks.validate import describe

    params["validate"]["policy"]["distribution_rating_top_share"] = "warn"
    resend(history, layout, DAY, lambda df: df.assign(rating=df["rating"].where(df.index % 20 == 0, 3.0)))
    res = run(DAY, params, layout)
    (warned,) = [w for w in res.warnings if w["check"] == "distribution_rating_top_share"]
    assert warned["band"]["level"] == "block"  # past the block band, and the policy said warn
    report = read_json(layout.reports("validation", DAY) / REPORT_FILE)
    assert warned in report["warnings"]
    assert "spreads away" in describe(warned) and "against a median of" in describe(warned)


def test_without_enough_trailing_days_there_is_no_band(ml100k, tmp_path, layout, params):
    land_days(ml100k, tmp_path / "landing", layout, DAY, 3)  # 3 days of history: fewer than profile_min_days
    resend(tmp_path / "landing", layout, DAY, lambda df: df.assign(rating=3.0))
    res = validate_day(DAY, layout, params["validate"])
    assert not [f for f in res.failures + res.warnings if f["check"].startswith("distribution_")]
