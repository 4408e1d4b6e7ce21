"""Landing-zone replay and ingest: day partitions, idempotence, re-delivery, clear errors."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from tasks.common import FreshrecError, sha256_file
from tasks.ingest import ingest_day
from tasks.replay import EVENTS_FILE, land_day, landing_path

DAY = dt.date(1997, 9, 25)


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


def test_landing_zone_on_the_object_store(ml100k, s3_env, params, layout):
    """`source.landing_dir: s3://...`: the replayer lands there, the sensor sees it, ingest reads it,
    on any worker, byte for byte."""
    from tasks.ingest import run as ingest_run
    from tasks.landing import LandingZone
    from tasks.replay import run as replay_run
    from tasks.s3 import client

    params["source"]["landing_dir"] = f"s3://{s3_env}/landing"
    zone = LandingZone.from_params(params)
    assert not zone.has(DAY) and zone.days() == []
    replay_run(DAY, params)
    assert zone.has(DAY) and zone.days() == [DAY]
    bucket, prefix = zone._bucket_prefix()
    client().put_object(Bucket=bucket, Key=f"{prefix}/date={DAY}/_SUCCESS", Body=b"")  # the export's marker
    first, again = ingest_run(DAY, params, layout), ingest_run(DAY, params, layout)
    assert (first.status, again.status) == ("new", "unchanged")
    assert len(pd.read_parquet(layout.raw(DAY) / EVENTS_FILE)) == 210
    with pytest.raises(FreshrecError, match=f"s3://{s3_env}/landing/date=1997-09-26/events.parquet"):
        ingest_run(DAY + dt.timedelta(days=1), params, layout)
