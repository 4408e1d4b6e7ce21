"""`window_pattern`: the `day` Param's regex for the data window, checked day by day against the dates."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tasks.common import FreshrecError, window_pattern

WINDOWS = [
    (dt.date(1997, 9, 20), dt.date(1998, 4, 22)),  # the embedded ML-100K replay
    (dt.date(2000, 4, 25), dt.date(2003, 2, 28)),  # ML-1M: several years
    (dt.date(1997, 9, 20), None),  # open-ended: your own data
    (dt.date(2000, 1, 1), dt.date(2000, 1, 1)),
    (dt.date(1999, 12, 31), dt.date(2000, 1, 1)),
    (dt.date(2000, 2, 10), dt.date(2000, 3, 5)),
]


@pytest.mark.parametrize(("first", "last"), WINDOWS)
def test_window_pattern_matches_exactly_the_days_of_the_window(first, last):
    pattern = re.compile(window_pattern(first, last))
    start = dt.date(1995, 1, 1)
    for i in range(366 * 10):
        day = start + dt.timedelta(days=i)
        assert bool(pattern.search(day.isoformat())) == (first <= day and (last is None or day <= last)), day
    for bad in ("1998-1-05", "1998-01-05x", "x1998-01-05", "10000-01-01", ""):
        assert not pattern.search(bad)


def test_an_empty_window_is_an_error():
    with pytest.raises(FreshrecError, match="empty data window"):
        window_pattern(dt.date(2000, 1, 2), dt.date(2000, 1, 1))
