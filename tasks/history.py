"""Reading ingested history: events through day D, per-user sequences, the day's holdout; and the history
unit (`index/history/date=D`) that lets a day's steps read the days before it as a few compacted files."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.common import (
    FreshrecError,
    Layout,
    atomic_dir,
    day_bounds,
    day_str,
    epoch_seconds,
    link_or_copy,
    read_json,
    sha256_file,
    write_json,
)
from tasks.contract import conform
from tasks.landing import EVENTS_FILE, ITEMS_FILE

HISTORY_LINEAGE = "lineage.json"  # the days a history unit holds, each with its partition's sha256
HISTORY_SEGMENTS = "segments"  # closed months, compacted: segments/month=YYYY-MM.parquet
HISTORY_DAYS = "days"  # the days of D's month: days/date=YYYY-MM-DD.parquet, the partition's own bytes


def _partitions(layout: Layout, keep) -> list[Path]:
    root = layout.raw_events_root()
    days = sorted(p for p in root.glob("date=*") if (p / EVENTS_FILE).exists()) if root.exists() else []
    return [p for p in days if keep(p.name[5:])]


def _read(path: Path) -> pd.DataFrame:
    return conform(pd.read_parquet(path))  # any zone -> UTC, dictionary -> values


ORDER = ["event_ts", "user_id", "item_id"]  # events are read in this order, ties kept as stored


def _ordered(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames as one, sorted by ORDER (stable). Each file is sorted on its own where it is not already
    (partitions and segments are written sorted); files that follow each other in time need no merge. The
    same frame, row for row, as sorting their concatenation: 20 s less at 10M events."""
    frames = [f if in_order(f) else f.sort_values(ORDER, kind="stable") for f in frames]
    events = pd.concat(frames, ignore_index=True)
    spans = [(f["event_ts"].iloc[0], f["event_ts"].iloc[-1]) for f in frames if len(f)]
    if all(a[1] < b[0] for a, b in itertools.pairwise(spans)):  # disjoint in time, in order
        return events
    return events.sort_values(ORDER, kind="stable").reset_index(drop=True)


def in_order(df: pd.DataFrame) -> bool:
    """Is the frame sorted by ORDER (and free of nulls in it)?"""
    return same_as_next(df) is not None


def same_as_next(df: pd.DataFrame) -> np.ndarray | None:
    """For a frame sorted by ORDER and free of nulls in it: per row but the last, does the next row have the
    same (event_ts, user_id, item_id)? (an ordered delivery's duplicates sit next to each other). None for
    any other frame. Vectorised: times, then ids where times tie."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(df) - 1
    if n < 1:
        return np.zeros(max(n, 0), bool)
    if not all(c in df for c in ORDER) or df[ORDER].isna().any().any():
        return None
    try:
        ts = df["event_ts"].astype("int64").to_numpy()  # epoch in the column's unit (naive or UTC-aware)
        ordered, tie = not (ts[1:] < ts[:-1]).any(), ts[1:] == ts[:-1]
        if ordered and tie.any():  # each row against the next, as zero-copy slices (a take of the ties: 10x slower)
            user, item = pa.array(df["user_id"]), pa.array(df["item_id"])
            u0, u1, i0, i1 = user.slice(0, n), user.slice(1), item.slice(0, n), item.slice(1)
            same_user = pc.equal(u0, u1)
            ids_ok = pc.or_(pc.less(u0, u1), pc.and_(same_user, pc.less_equal(i0, i1)))
            ordered = pc.all(pc.or_(pc.invert(pa.array(tie)), ids_ok)).as_py()
            tie &= pc.and_(same_user, pc.equal(i0, i1)).to_numpy(zero_copy_only=False)
        return tie if ordered else None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        return None  # times or ids of other types (text times, mixed ids): let pandas sort them


def history_files(unit: Path) -> list[Path]:
    """A history unit's files, oldest first: its compacted months, then the days of the current month."""
    return sorted((unit / HISTORY_SEGMENTS).glob("month=*.parquet")) + sorted((unit / HISTORY_DAYS).glob("date=*"))


def load_events(layout: Layout, through: dt.date, since: dt.date | None = None) -> pd.DataFrame:
    """Every validated-or-pending event partition with since <= date <= through, time-ordered.

    Where the history unit of `through` is on disk (`index/history/date=D`, pulled by every step that reads
    the history), the days before `through` come from it: a few compacted files instead of one partition a
    day; the same frame, row for row. Quarantined days are not under raw/ any more, so they never reach training.
    """
    unit = layout.index("history", through)
    frames: list[pd.DataFrame] = []
    if since is None and (unit / HISTORY_LINEAGE).exists():
        frames = [_read(p) for p in history_files(unit)]
        keep = [layout.raw(through)] if (layout.raw(through) / EVENTS_FILE).exists() else []  # the day's own
    else:
        keep = _partitions(layout, lambda d: d <= day_str(through) and (since is None or d >= day_str(since)))
    frames += [_read(p / EVENTS_FILE) for p in keep]
    if not frames:
        raise FreshrecError(
            f"no ingested events on or before {through} under {layout.raw_events_root()}: ingest some days first"
        )
    return _ordered(frames)


def build_history(layout: Layout, day: dt.date) -> Path:
    """Write `index/history/date=D`: every event of the days before D, as day D's steps read it.

    Built from the newest history unit before D (its days) and the partitions of the days since it (in order:
    the day before), so a day costs what the day holds. The days of D's month are the partitions' own
    files (the store keeps their bytes once); a month that has ended is compacted into one file the first
    time a later day builds on it, so a unit holds at most a file a month and a file a day of one month.
    `lineage.json` lists every day it holds with its partition's sha256 (the promoted version's lineage).
    The caller has every day before D settled (pull_champion: D-1 has ended), so the unit never changes."""
    folder = layout.index("history")
    bound = f"date={day_str(day)}"
    older = sorted(p for p in folder.glob("date=*") if p.name < bound and (p / HISTORY_LINEAGE).exists())
    base = older[-1] if older else None
    since = base.name[5:] if base else ""
    days = read_json(base / HISTORY_LINEAGE)["days"] if base else {}
    sources = {p.name[5:-8]: p for p in (base / HISTORY_DAYS).glob("date=*.parquet")} if base else {}
    for part in _partitions(layout, lambda d: since <= d < day_str(day)):
        sources[part.name[5:]] = part / EVENTS_FILE
        days[part.name[5:]] = sha256_file(part / EVENTS_FILE)
    month = day_str(day)[:7]
    with atomic_dir(layout.index("history", day)) as tmp:
        (tmp / HISTORY_SEGMENTS).mkdir()
        (tmp / HISTORY_DAYS).mkdir()
        closed: dict[str, list[Path]] = {}
        for d, src in sorted(sources.items()):
            if d[:7] < month:
                closed.setdefault(d[:7], []).append(src)
            else:
                link_or_copy(src, tmp / HISTORY_DAYS / f"date={d}.parquet")
        for seg in sorted((base / HISTORY_SEGMENTS).glob("month=*.parquet")) if base else []:
            if seg.stem[6:] in closed:  # a late day of a compacted month: the month is compacted again
                closed[seg.stem[6:]].insert(0, seg)
            else:
                link_or_copy(seg, tmp / HISTORY_SEGMENTS / seg.name)
        for m, files in sorted(closed.items()):
            _ordered([_read(f) for f in files]).to_parquet(tmp / HISTORY_SEGMENTS / f"month={m}.parquet", index=False)
        write_json(tmp / HISTORY_LINEAGE, {"before": day_str(day), "days": dict(sorted(days.items()))})
    return layout.index("history", day)


def drop_history_after(layout: Layout, day: dt.date) -> list[str]:
    """Day D ingested anew (a late day, a replaced delivery): the local history units of the days after it
    held the old D, so they go (the next build starts from the newest unit left). Returns their names."""
    import shutil

    folder = layout.index("history")
    stale = sorted(p.name for p in folder.glob("date=*") if p.name > f"date={day_str(day)}") if folder.is_dir() else []
    for name in stale:
        shutil.rmtree(folder / name)
    return stale


def partition_digests(layout: Layout, through: dt.date) -> dict[str, str]:
    """Day -> sha256 of its events partition, for every day through `through`: the history unit's lineage
    and the day's own partition (every partition hashed where there is no unit)."""
    unit = layout.index("history", through) / HISTORY_LINEAGE
    if unit.exists():
        days = dict(read_json(unit)["days"])
        parts = [layout.raw(through)] if (layout.raw(through) / EVENTS_FILE).exists() else []
    else:
        days, parts = {}, _partitions(layout, lambda d: d <= day_str(through))
    return days | {p.name[5:]: sha256_file(p / EVENTS_FILE) for p in parts}


def standing_items(layout: Layout, day: dt.date, before: bool = False) -> Path | None:
    """The catalogue snapshot standing on `day` (the newest on or before it; strictly before with `before`)."""
    root = layout.root / "raw" / "items"
    bound = day_str(day)
    keep = (lambda d: d < bound) if before else (lambda d: d <= bound)
    snaps = sorted(p for p in root.glob("date=*") if keep(p.name[5:])) if root.exists() else []
    return snaps[-1] / ITEMS_FILE if snaps else None


def read_items(path: Path) -> pd.DataFrame:
    """A catalogue snapshot; one that cannot be read is an error that names it."""
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # a damaged file, a format pandas cannot read
        raise FreshrecError(f"the catalogue snapshot {path} cannot be read ({type(exc).__name__}: {exc})") from exc


def load_items(layout: Layout, day: dt.date) -> pd.DataFrame:
    """The most recent catalogue snapshot on or before `day`."""
    path = standing_items(layout, day)
    if path is None:
        raise FreshrecError(
            f"no item catalogue on or before {day} under {layout.root / 'raw' / 'items'}: ingest the day first"
        )
    return read_items(path)


def user_day_codes(events: pd.DataFrame) -> np.ndarray:
    """Per event, the number of its (user, UTC day) group, the groups numbered in (user, day) order, users by
    first appearance. A null user is a user of its own (numbered first)."""
    users, _ = pd.factorize(events["user_id"])
    days = epoch_seconds(events["event_ts"]) // 86_400
    if not len(days):
        return np.empty(0, np.int64)
    span = int(days.max() - days.min()) + 1
    keys = users.astype(np.int64) * span + (days - days.min())
    return pd.factorize(keys, sort=True)[0]  # np.unique's inverse; numpy 2's unique is 8x slower at 10M


def day_mask(events: pd.DataFrame, day: dt.date) -> np.ndarray:
    start, end = day_bounds(day)
    ts = epoch_seconds(events["event_ts"])
    return (ts >= start) & (ts < end)


def holdout_mask(events: pd.DataFrame, day: dt.date, fraction: float) -> np.ndarray:
    """The day's held-out events: the last `fraction` (at least one) of each active user's day.

    Champion and challenger are scored on exactly these; the challenger never trains on them.
    Deterministic: it depends only on the events and the day. `fraction` 0 holds out nothing
    (training on everything, as the prequential replay benchmark does after scoring the day).
    """
    on_day = day_mask(events, day)
    mask = np.zeros(len(events), dtype=bool)
    if not on_day.any() or fraction <= 0:
        return mask
    idx = np.flatnonzero(on_day)
    users = events["user_id"].to_numpy()[idx]
    # rank of each event within its user's day, counted from the end (events are time-ordered)
    order = pd.Series(idx).groupby(users).cumcount(ascending=False).to_numpy()
    counts = pd.Series(users).map(pd.Series(users).value_counts()).to_numpy()
    n_held = np.maximum(1, np.ceil(counts * fraction)).astype(int)
    mask[idx[order < n_held]] = True
    return mask


def sequences(events: pd.DataFrame, item_index: dict[str, int]) -> dict[str, np.ndarray]:
    """user_id -> time-ordered internal item indices (unknown items map to 0 and are dropped)."""
    idx = events["item_id"].map(item_index).fillna(0).astype(np.int64).to_numpy()
    out: dict[str, np.ndarray] = {}
    for user, rows in pd.Series(np.arange(len(events))).groupby(events["user_id"].to_numpy()):
        seq = idx[rows.to_numpy()]
        out[user] = seq[seq > 0]
    return out


def left_pad(seq: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, dtype=np.int64)
    tail = seq[-length:]
    if len(tail):
        out[length - len(tail) :] = tail
    return out


def window_count(length: int, max_len: int) -> int:
    """How many windows `windows(seq, max_len, all_chunks=True)` cuts from a sequence of `length` items."""
    return max(0, -(-(length - 1) // max_len))


def window_at(seq: np.ndarray, max_len: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k-th (input, target) window from the end of `seq` (0: the newest), left-padded to max_len."""
    end = len(seq) - k * max_len
    chunk = seq[max(0, end - max_len - 1) : end]
    return left_pad(chunk[:-1], max_len), left_pad(chunk[1:], max_len)


def windows(seq: np.ndarray, max_len: int, all_chunks: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, target) pairs, left-padded to max_len; the last chunk, or every chunk back to the start."""
    n = window_count(len(seq), max_len)
    return [window_at(seq, max_len, k) for k in range(n if all_chunks else min(n, 1))]
