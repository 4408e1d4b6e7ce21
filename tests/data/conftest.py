"""Fixtures of the data tests: real ML-100K days in a landing zone, ingested."""

from __future__ import annotations

import datetime as dt

import pytest

DAY = dt.date(1997, 9, 25)  # the day under test; 09-22..09-24 before it hold 666, 386 and 566 events


def land_days(ml100k, landing, layout, last: dt.date, before: int) -> None:
    """Land and ingest the real days `last - before` .. `last`, in order."""
    from tasks.ingest import ingest_day
    from tasks.replay import land_day

    for back in range(before, -1, -1):
        d = last - dt.timedelta(days=back)
        land_day(ml100k, d, landing)
        ingest_day(d, landing, layout)


def resend(landing, layout, day: dt.date, make) -> None:
    """The upstream re-sends `day` with its events changed by `make(frame)`; ingested."""
    import pandas as pd

    from tasks.ingest import ingest_day
    from tasks.replay import EVENTS_FILE, landing_path

    path = landing_path(landing, day) / EVENTS_FILE
    make(pd.read_parquet(path)).to_parquet(path, index=False)
    ingest_day(day, landing, layout)


@pytest.fixture
def landed(ml100k, tmp_path, layout):
    """Four real days landed and ingested; DAY is the one under test. Returns the landing zone."""
    land_days(ml100k, tmp_path / "landing", layout, DAY, 3)
    return tmp_path / "landing"
