"""Holdout split and training windows: deterministic, leak-free, correctly padded."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from tasks.history import holdout_mask, left_pad, windows

DAY = dt.date(2024, 1, 2)


def _events(rows):
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_ts": pd.to_datetime([r[2] for r in rows], utc=True),
        }
    )


def test_holdout_is_the_tail_of_each_users_day():
    """20 % of each active user's day-D events, at least one, the latest ones; other days untouched."""
    ev = (
        _events(
            [("a", "1", "2024-01-01 10:00"), ("a", "2", "2024-01-02 09:00"), ("a", "3", "2024-01-02 10:00")]
            + [("b", str(i), f"2024-01-02 0{i}:00") for i in range(10)]
            + [("c", "9", "2024-01-03 01:00")]
        )
        .sort_values("event_ts", kind="stable")
        .reset_index(drop=True)
    )
    held = holdout_mask(ev, DAY, 0.2)
    got = set(map(tuple, ev.loc[held, ["user_id", "item_id"]].to_numpy()))
    assert got == {("a", "3"), ("b", "8"), ("b", "9")}
    assert (holdout_mask(ev, DAY, 0.2) == held).all()
    assert not holdout_mask(ev, DAY, 0.0).any()  # fraction 0: train on everything (replay benchmark)


def test_windows_shift_targets_by_one_and_left_pad():
    seq = np.arange(1, 8)
    (x, y), *_ = windows(seq, 4, all_chunks=False)
    assert x.tolist() == [3, 4, 5, 6] and y.tolist() == [4, 5, 6, 7]
    chunks = windows(seq, 4, all_chunks=True)
    assert [c[1].tolist() for c in chunks] == [[4, 5, 6, 7], [0, 0, 2, 3]]
    assert left_pad(np.array([5]), 3).tolist() == [0, 0, 5]
