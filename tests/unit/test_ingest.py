"""Landing-zone replay and ingest: day partitions, idempotence, re-delivery, clear errors."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from tasks.common import FreshrecError, sha256_file
from tasks.ingest import ingest_day
from tasks.replay import EVENTS_FILE, land_day, landing_path
from tasks.sources import load_dataset

DAY = dt.date(1997, 9, 25)


@pytest.fixture(scope="module")
def ml100k():
    return load_dataset("ml-100k")


def test_land_day_holds_exactly_that_utc_day(ml100k, tmp_path):
    landed = land_day(ml100k, DAY, tmp_path)
    df = pd.read_parquet(landed.path)
    assert landed.rows == len(df) == 210
    assert df["event_ts"].min() >= pd.Timestamp(DAY, tz="UTC")
    assert df["event_ts"].max() < pd.Timestamp(DAY + dt.timedelta(days=1), tz="UTC")
    items = pd.read_parquet(landing_path(tmp_path, DAY) / "items.parquet")
    assert set(df["item_id"]) <= set(items["item_id"])


def test_ingest_is_idempotent_and_takes_redeliveries(ml100k, tmp_path, layout):
    """Same bytes twice: no-op. Different bytes: the partition is replaced, atomically."""
    land_day(ml100k, DAY, tmp_path / "landing")
    first = ingest_day(DAY, tmp_path / "landing", layout)
    again = ingest_day(DAY, tmp_path / "landing", layout)
    assert (first.status, again.status) == ("new", "unchanged")
    src = landing_path(tmp_path / "landing", DAY) / EVENTS_FILE
    pd.read_parquet(src).iloc[:-1].to_parquet(src, index=False)  # upstream re-sends the day, one row fewer
    redelivered = ingest_day(DAY, tmp_path / "landing", layout)
    assert redelivered.status == "redelivered"
    assert sha256_file(layout.raw(DAY) / EVENTS_FILE) == sha256_file(src)
    assert not list(layout.raw(DAY).parent.glob(".*"))  # no temp dirs left behind


def test_ingest_without_landing_names_the_missing_file(tmp_path, layout):
    with pytest.raises(FreshrecError, match="nothing landed for 1997-09-25"):
        ingest_day(DAY, tmp_path / "landing", layout)
