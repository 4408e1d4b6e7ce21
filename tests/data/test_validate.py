"""The expectation suite against a good day and the bad days it claims to catch.

Each bad day must: fail validation naming the broken check, be moved intact (byte for
byte) to quarantine with its report, and leave raw/ without that day.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from tasks.common import ValidationFailed, read_json, sha256_file
from tasks.ingest import ingest_day
from tasks.replay import EVENTS_FILE, land_day, landing_path
from tasks.sources import load_dataset
from tasks.validate import REPORT_FILE, run, validate_day

DAY = dt.date(1997, 9, 25)


@pytest.fixture(scope="module")
def ml100k():
    return load_dataset("ml-100k")


@pytest.fixture
def landed(ml100k, tmp_path, layout):
    """Four real days landed and ingested; DAY is the one under test."""
    for back in range(3, -1, -1):
        d = DAY - dt.timedelta(days=back)
        land_day(ml100k, d, tmp_path / "landing")
        ingest_day(d, tmp_path / "landing", layout)
    return tmp_path / "landing"


def _redeliver(landed, layout, df: pd.DataFrame | None = None, raw: bytes | None = None):
    path = landing_path(landed, DAY) / EVENTS_FILE
    if raw is not None:
        path.write_bytes(raw)
    else:
        df.to_parquet(path, index=False)
    ingest_day(DAY, landed, layout)
    return sha256_file(path)


def test_good_day_passes_and_writes_data_docs(landed, layout, params):
    res = validate_day(DAY, layout, params["validate"])
    assert res.passed, res.failures
    assert res.rows == 210
    assert (layout.root / "reports" / "gx_docs" / "index.html").exists()
    assert read_json(layout.reports("validation", DAY) / REPORT_FILE)["passed"]


def _day(landed) -> pd.DataFrame:
    return pd.read_parquet(landing_path(landed, DAY) / EVENTS_FILE)


BAD_DAYS = {
    "rating_range": lambda df: df.assign(rating=df["rating"].where(df.index % 7 != 0, 11.0)),
    "ts_in_day": lambda df: df.assign(event_ts=df["event_ts"] + pd.Timedelta(days=3)),
    "no_duplicates": lambda df: pd.concat([df, df.head(5)], ignore_index=True),
    "columns": lambda df: df.drop(columns=["rating"]),
    "not_null_user_id": lambda df: df.assign(user_id=df["user_id"].where(df.index % 5 != 0, None)),
    "event_type": lambda df: df.assign(event_type="purchase"),
    "type_rating": lambda df: df.assign(rating=df["rating"].astype(str)),
    "unknown_items_share": lambda df: df.assign(item_id="new-" + df["item_id"]),
}


@pytest.mark.parametrize("check", sorted(BAD_DAYS))
def test_bad_day_is_quarantined_intact_and_named(check, landed, layout, params):
    digest = _redeliver(landed, layout, BAD_DAYS[check](_day(landed)))
    with pytest.raises(ValidationFailed) as err:
        run(DAY, params, layout)
    assert check in str(err.value)
    quarantined = layout.quarantine(DAY)
    assert not layout.raw(DAY).exists()
    assert sha256_file(quarantined / EVENTS_FILE) == digest  # byte for byte
    report = read_json(quarantined / REPORT_FILE)
    assert check in {f["check"] for f in report["failures"]}
    assert layout.raw(DAY - dt.timedelta(days=1)).exists()  # other days untouched


def test_truncated_parquet_is_quarantined_with_the_read_error(landed, layout, params):
    data = (landing_path(landed, DAY) / EVENTS_FILE).read_bytes()
    digest = _redeliver(landed, layout, raw=data[: len(data) // 2])
    with pytest.raises(ValidationFailed, match="readable"):
        run(DAY, params, layout)
    assert sha256_file(layout.quarantine(DAY) / EVENTS_FILE) == digest


def test_unknown_items_warn_but_do_not_block(landed, layout, params):
    """Items missing from the catalogue are allowed (policy: warn), counted in the report."""
    df = _day(landed)
    df.loc[0, "item_id"] = "999999"
    _redeliver(landed, layout, df)
    res = run(DAY, params, layout)
    assert res.passed
    assert [w["check"] for w in res.warnings] == ["unknown_items"]
    assert res.warnings[0]["unexpected_count"] == 1


def test_fixed_redelivery_goes_through_after_quarantine(landed, layout, params):
    good = _day(landed)
    _redeliver(landed, layout, good.assign(rating=99.0))
    with pytest.raises(ValidationFailed):
        run(DAY, params, layout)
    _redeliver(landed, layout, good)
    assert run(DAY, params, layout).passed
    assert layout.raw(DAY).exists() and layout.quarantine(DAY).exists()  # the bad delivery is kept
