"""Reading ingested history: events through day D, per-user sequences, the day's holdout."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.common import FreshrecError, Layout, day_bounds, day_str, epoch_seconds
from tasks.contract import conform
from tasks.landing import EVENTS_FILE, ITEMS_FILE


def load_events(layout: Layout, through: dt.date, since: dt.date | None = None) -> pd.DataFrame:
    """Every validated-or-pending event partition with since <= date <= through, time-ordered.

    Quarantined days are not under raw/ any more, so they never reach training.
    """
    root = layout.raw_events_root()
    days = sorted(p for p in root.glob("date=*") if (p / EVENTS_FILE).exists()) if root.exists() else []
    keep = [p for p in days if p.name[5:] <= day_str(through) and (since is None or p.name[5:] >= day_str(since))]
    if not keep:
        raise FreshrecError(f"no ingested events on or before {through} under {root}: ingest some days first")
    frames = [conform(pd.read_parquet(p / EVENTS_FILE)) for p in keep]  # any zone -> UTC, dictionary -> values
    events = pd.concat(frames, ignore_index=True)
    return events.sort_values(["event_ts", "user_id", "item_id"], kind="stable").reset_index(drop=True)


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


def events_per_user_day(events: pd.DataFrame) -> np.ndarray:
    """Events per (user, UTC day): the same unit for a 28-day reference and a one-day current."""
    days = events["event_ts"].dt.floor("D")
    return events.groupby([events["user_id"], days]).size().to_numpy()


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


def windows(seq: np.ndarray, max_len: int, all_chunks: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, target) pairs, left-padded to max_len; the last chunk, or every chunk back to the start."""
    pairs = []
    end = len(seq)
    while end >= 2:
        chunk = seq[max(0, end - max_len - 1) : end]
        pairs.append((left_pad(chunk[:-1], max_len), left_pad(chunk[1:], max_len)))
        if not all_chunks:
            break
        end -= max_len
    return pairs
