"""The vectorised paths a 10M-event day takes (issue 29) give what the plain ones gave, row for row."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tasks.contract import MISSING_SPELLINGS, id_problem, id_problems, missing_spellings, plainly_canonical
from tasks.event_keys import KeyIndex
from tasks.history import ORDER, _ordered, in_order

TRICKY = [
    "50", "050", "+5", "-5", "5.0", "1e5", " 5", "5 ", "", "0", "00", "abc", "Abc Def", "x y", "٥", "٠٥",
    "Alien³", "a\u200bb", "a\u00a0b", "\u00a0a", "e\u0301", "é", "Ａ1", "𝐀", "Pаris", "NULL", "n/a", " null ",
    "N/A ", "\tnone", "undefined", "unknown", "\x1cnull", "İ", "\\N", "#N/A", "item-1", "u_77", "9" * 40,
]  # fmt: skip


def test_plainly_canonical_never_passes_what_the_rules_flag():
    values = pd.Series(TRICKY, dtype=object)
    plain = plainly_canonical(values)
    assert plain.any() and not plain.all()
    for value, ok in zip(TRICKY, plain, strict=True):
        assert not ok or id_problem(value) is None, value


def test_id_problems_as_the_rules_say_row_by_row():
    col = pd.Series(TRICKY * 3 + [None, 7, b"050"], dtype=object)
    got = id_problems(col)
    for value, found in zip(col, got, strict=True):
        want = id_problem(value) if value is not None else None
        assert pd.isna(found) == (want is None), value


@pytest.mark.parametrize("dtype", [object, "str"])
def test_missing_spellings_match_the_python_reading(dtype):
    col = pd.Series(TRICKY + ["NULL", "x"] * 3, dtype=dtype)
    want = {v: int((col == v).sum()) for v in set(TRICKY) if v.strip().lower() in MISSING_SPELLINGS}
    assert missing_spellings(col) == want
    mixed = pd.Series(["NULL", 5, b"null", "n/a"], dtype=object)  # not all text: the one-by-one path
    assert missing_spellings(mixed) == {"NULL": 1, "n/a": 1}


def _day(i: int, rng, shuffle: bool) -> pd.DataFrame:
    start = pd.Timestamp("2000-01-01", tz="UTC") + pd.Timedelta(days=i)
    n = 400
    df = pd.DataFrame({
        "user_id": rng.choice(["a", "b", "c", "d"], n),
        "item_id": rng.choice([str(k) for k in range(30)], n),
        "event_ts": start + pd.to_timedelta(rng.integers(0, 40, n), unit="s"),  # many ties
        "rating": rng.integers(1, 6, n).astype("float32"),
    })  # fmt: skip
    return df if shuffle else df.sort_values(ORDER, kind="stable", ignore_index=True)


def test_ordered_equals_sorting_the_whole():
    rng = np.random.default_rng(0)
    frames = [_day(i, rng, shuffle=i % 2 == 0) for i in range(6)]
    want = pd.concat(frames, ignore_index=True).sort_values(ORDER, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(_ordered(frames), want)
    overlapping = [frames[3], frames[1], frames[1]]  # out of time order, and overlapping: the full sort
    want = pd.concat(overlapping, ignore_index=True).sort_values(ORDER, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(_ordered(overlapping), want)


def test_in_order_looks_past_ties_and_below_the_second():
    t0 = pd.Timestamp("2000-01-01", tz="UTC")
    tied = pd.DataFrame({"user_id": ["b", "a"], "item_id": ["1", "1"], "event_ts": [t0, t0]})
    assert not in_order(tied) and in_order(tied.iloc[::-1])
    sub_second = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["1", "2"],
                               "event_ts": [t0 + pd.Timedelta("700ms"), t0 + pd.Timedelta("200ms")]})  # fmt: skip
    assert not in_order(sub_second)
    with_null = pd.DataFrame({"user_id": ["a", None], "item_id": ["1", "2"], "event_ts": [t0, t0]})
    assert not in_order(with_null)
    text_times = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["1", "2"], "event_ts": ["2000-01-02", "2000-01-01"]})
    assert not in_order(text_times)  # not a time column: pandas sorts it, as before
    assert _ordered([text_times])["event_ts"].tolist() == ["2000-01-01", "2000-01-02"]


def test_key_index_merge_and_lookup_match_the_plain_ones():
    rng = np.random.default_rng(1)
    index, ref_h, ref_d = KeyIndex.empty(), np.empty(0, np.uint64), np.empty(0, np.int32)
    for i, n in enumerate([1000, 0, 5000, 3000, 7]):
        hashes = rng.integers(0, 2**14, n).astype(np.uint64)  # repeats within and across days
        day = dt.date(2000, 1, 1) + dt.timedelta(days=i)
        probe = rng.integers(0, 2**14, 700).astype(np.uint64)
        pos = np.minimum(np.searchsorted(ref_h, probe), max(len(ref_h) - 1, 0))
        want = np.where(ref_h[pos] == probe, ref_d[pos], -1) if len(ref_h) else np.full(len(probe), -1)
        assert (index.first_days(probe) == want).all()
        keys = np.unique(hashes)
        at = np.searchsorted(ref_h, keys)
        held = np.zeros(len(keys), bool)
        held[at < len(ref_h)] = ref_h[at[at < len(ref_h)]] == keys[at < len(ref_h)]
        ordinal = (day - dt.date(1970, 1, 1)).days
        ref_h = np.insert(ref_h, at[~held], keys[~held])
        ref_d = np.insert(ref_d, at[~held], np.full((~held).sum(), ordinal, np.int32))
        index = index.add(hashes, day)
        assert (index.hashes == ref_h).all() and (index.days == ref_d).all()


def test_user_day_counts_as_groupby():
    from tasks.drift import user_days

    rng = np.random.default_rng(2)
    df = pd.concat([_day(i, rng, shuffle=True) for i in range(3)], ignore_index=True)
    df["event_ts"] += pd.to_timedelta(rng.integers(0, 86_000, len(df)), unit="s")  # across midnight
    df["event_type"] = "rating"
    ratings, types = np.sort(df["rating"].unique()), np.array(["rating"])

    def counts(frame):  # per (user, UTC day), as the signals and the report's histogram see them
        return np.sort(user_days(frame, ratings, types).counts)

    want = df.groupby([df["user_id"], df["event_ts"].dt.floor("D")]).size().to_numpy()
    assert (counts(df) == np.sort(want)).all()
    df.loc[df.index[::5], "user_id"] = None  # a null user is a user of its own
    want = df.groupby([df["user_id"], df["event_ts"].dt.floor("D")], dropna=False).size().to_numpy()
    assert (counts(df) == np.sort(want)).all()


def test_drift_windows_as_slices_equal_the_masks():
    from tasks.drift import windows

    rng = np.random.default_rng(3)
    df = pd.concat([_day(i, rng, shuffle=False) for i in range(12)], ignore_index=True)
    day = dt.date(2000, 1, 11)
    ts, at = df["event_ts"], lambda d: pd.Timestamp(d, tz="UTC")
    want_before = df[ts < at(day)]  # the masks, written out: the oracle
    want = (want_before[(want_before["event_ts"] >= at(day - dt.timedelta(days=5)))],
            df[(ts >= at(day)) & (ts < at(day + dt.timedelta(days=1)))], want_before,
            df[ts < at(day + dt.timedelta(days=1))])  # fmt: skip
    for frame in (df, df.sample(frac=1, random_state=0)):  # time-ordered, and not
        got = windows(frame, day, None, 5)
        for a, b in zip(got[:4], want, strict=True):
            assert len(b) > 0
            pd.testing.assert_frame_equal(a.sort_index(), b.sort_index())
        assert got[4:] == (day - dt.timedelta(days=1), at(day - dt.timedelta(days=5)), at(day))


def test_user_day_counts_match_add_at():
    from tasks.drift import user_days

    rng = np.random.default_rng(4)
    df = pd.concat([_day(i, rng, shuffle=True) for i in range(3)], ignore_index=True)
    ratings, types = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array(["rating"])
    df["event_type"] = "rating"
    got = user_days(df, ratings, types)
    users, _ = pd.factorize(df["user_id"])
    days = df["event_ts"].dt.as_unit("s").astype("int64").to_numpy() // 86_400
    _, codes = np.unique(users * 1_000_000 + days - days.min(), return_inverse=True)
    want = np.zeros((codes.max() + 1, 5))
    np.add.at(want, (codes, np.searchsorted(ratings, df["rating"].to_numpy())), 1)
    assert (got.ratings == want).all() and (got.counts == want.sum(axis=1)).all()
    assert (got.types[:, 0] == got.counts).all()


@pytest.mark.parametrize("ordered", [True, False])
def test_duplicate_events_flag_what_pandas_duplicated_flags(ordered):
    from tasks.validate import duplicate_events

    rng = np.random.default_rng(3)
    n = 5_000
    df = pd.DataFrame(
        {
            "user_id": pd.Series(rng.integers(0, 40, n).astype(str), dtype="str"),
            "item_id": pd.Series(rng.integers(0, 30, n).astype(str), dtype="str"),
            "event_ts": pd.Timestamp("1998-03-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 600, n), unit="s"),
            "rating": 4.0,
        }
    )  # many (user, item) pairs repeat at other times; some at the same time: the duplicates
    df = df.sort_values(ORDER, kind="stable").reset_index(drop=True)
    if not ordered:
        df = df.sample(frac=1.0, random_state=0)
    assert in_order(df) == ordered
    want = df.duplicated(ORDER, keep=False)
    got = duplicate_events(df)
    assert 0 < want.sum() < n and (got.notna() == want).all()
    first = got[got.notna()].iloc[0]
    row = df.loc[got.notna()].iloc[0]
    assert first == f"{row['user_id']} {row['item_id']} {row['event_ts']}"
    assert duplicate_events(df.drop_duplicates(ORDER)).isna().all()
