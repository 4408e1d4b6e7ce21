"""The index of event keys: finds the events of day D that were already ingested on an earlier day, in O(day).

A dataset declares its event key in the contract (`validate.event_key`: MovieLens rates a (user, item) pair
once, so `[user_id, item_id]`; a listening log would add `event_ts` or declare none). An event of D whose key
an earlier day already holds is a replay, sent as it was or re-stamped, and training would count it twice
(`replayed_events`, blocks by default).

The index is a derived unit, `index/event_keys/date=D/keys.npz`: the sorted 64-bit hashes (pandas' stable
SipHash of the key's text) of every key of the days validated through D, each with the first day it came
on. `validate_events` reads the newest index before D, plus the partitions of any days ingested between
that index's day and D (none when the days run in order), looks each of D's keys up (binary search: O(day
x log history), one compact file instead of every partition), and when D passes writes D's index: the one
it read, the days in between, and D. So every day's index is built from its predecessor and the day, a
fresh worker pulls one file, and a re-run of D rebuilds the same index. A day is checked against the days
ingested before it was validated: in a backfill that validates D before D-1 has landed, their overlap is
not seen from either side (docs/data-guard.md).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

KEYS_FILE = "keys.npz"
_EPOCH = dt.date(1970, 1, 1)


def key_hashes(events: pd.DataFrame, key: list[str]) -> np.ndarray:
    """One uint64 per event: the hash of its key columns' text (stable across processes and machines)."""
    if events.empty:
        return np.empty(0, np.uint64)
    return pd.util.hash_pandas_object(events[key].astype(str), index=False).to_numpy(np.uint64)


@dataclass(frozen=True)
class KeyIndex:
    hashes: np.ndarray  # uint64, sorted, unique
    days: np.ndarray  # int32: the day (days since 1970-01-01) each key first came on

    @classmethod
    def empty(cls) -> KeyIndex:
        return cls(np.empty(0, np.uint64), np.empty(0, np.int32))

    @classmethod
    def load(cls, path: Path) -> KeyIndex:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["hashes"], z["days"])

    def save(self, path: Path) -> None:
        with path.open("wb") as f:
            np.savez(f, hashes=self.hashes, days=self.days)

    def __len__(self) -> int:
        return len(self.hashes)

    def first_days(self, hashes: np.ndarray) -> np.ndarray:
        """Per hash, the day its key first came on (int32), or -1 if the index does not hold it."""
        if not len(self.hashes) or not len(hashes):
            return np.full(len(hashes), -1, np.int32)
        order = np.argsort(hashes)  # sorted lookups walk the index in order (random ones: 30x slower at 10M)
        keys = hashes[order]
        pos = np.minimum(np.searchsorted(self.hashes, keys), len(self.hashes) - 1)
        out = np.empty(len(hashes), np.int32)
        out[order] = np.where(self.hashes[pos] == keys, self.days[pos], -1)
        return out

    def add(self, hashes: np.ndarray, day: dt.date) -> KeyIndex:
        """This index and a day's keys; a key already held keeps its first day."""
        keys = _sorted_unique(hashes)
        at = np.searchsorted(self.hashes, keys)
        held = np.zeros(len(keys), bool)
        inside = at < len(self.hashes)
        held[inside] = self.hashes[at[inside]] == keys[inside]
        fresh, where = keys[~held], at[~held]  # one merge of two sorted arrays, no re-sort of the index:
        slots = where + np.arange(len(fresh))  # each fresh key's place in the merged index
        old = np.ones(len(self.hashes) + len(fresh), bool)
        old[slots] = False
        hashes, days = np.empty(len(old), np.uint64), np.empty(len(old), np.int32)
        hashes[old], days[old] = self.hashes, self.days
        hashes[slots], days[slots] = fresh, (day - _EPOCH).days
        return KeyIndex(hashes, days)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy 2's hash-table unique takes 12 s on 10M uint64, a sort 0.2 s."""
    ordered = np.sort(values)
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if len(ordered) else ordered


def day_of(ordinal: int) -> str:
    return str(_EPOCH + dt.timedelta(days=int(ordinal)))


def replay_days(index: KeyIndex, hashes: np.ndarray, rows: pd.Index) -> pd.Series:
    """Per event (its key's hash; `rows`: the frame's index), the earlier day its key came on (`YYYY-MM-DD`),
    None for a key never seen before."""
    first = pd.Series(index.first_days(hashes), index=rows)
    names = {o: day_of(o) for o in first[first >= 0].unique()}
    return first.map(names).astype(object).where(first >= 0, None)
