"""Fixtures of the data tests: real ML-100K days in a landing zone, ingested."""

from __future__ import annotations

import datetime as dt

import pytest

DAY = dt.date(1997, 9, 25)  # the day under test; 09-22..09-24 before it hold 666, 386 and 566 events


@pytest.fixture
def landed(ml100k, tmp_path, layout):
    """Four real days landed and ingested; DAY is the one under test. Returns the landing zone."""
    from tasks.ingest import ingest_day
    from tasks.replay import land_day

    for back in range(3, -1, -1):
        d = DAY - dt.timedelta(days=back)
        land_day(ml100k, d, tmp_path / "landing")
        ingest_day(d, tmp_path / "landing", layout)
    return tmp_path / "landing"
