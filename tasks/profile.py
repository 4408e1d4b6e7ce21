"""A day's distribution profile, held against the trailing days': values valid one by one but wrong together.

Every row of a day can pass the contract while the day as a whole is wrong: one rating for almost every
event, one item for all of them, a column that stops spreading. The profile measures, per event column,
what such a day changes (`STATS`):

- `top_share`: the share of the commonest value (user_id, item_id, event_type, rating);
- `distinct_share`: distinct values per event (user_id, item_id: how many users and items the day spreads
  over, independent of its volume);
- `mean` and `std` of rating.

Each is held against the same statistic of the trailing ingested days (`validate.volume_window_days`): the
median, and a spread that adds the trailing days' own variation (1.4826 x MAD, the standard deviation for
normal data) to the sampling noise of a day of this size (sqrt(p(1-p)/n) for a share, std/sqrt(n) for a
mean, std/sqrt(2n) for a standard deviation). `z` is the distance from the median in those spreads; past
`validate.profile_warn_z` the check warns, past `validate.profile_block_z` it blocks (`validate.policy`
may turn a block into a warning, as for every check). The bands were chosen on every real day of ML-100K
and ML-1M (`bench/profile_policy.py`, docs/BENCHMARKS.md), with fewer than `profile_min_days` trailing
days there is no band.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import pandas as pd

STATS = (
    ("top_share", "user_id"),
    ("top_share", "item_id"),
    ("top_share", "event_type"),
    ("top_share", "rating"),
    ("distinct_share", "user_id"),
    ("distinct_share", "item_id"),
    ("mean", "rating"),
    ("std", "rating"),
)
COLUMNS = sorted({c for _, c in STATS})
MAD_TO_SD = 1.4826


def profile(df: pd.DataFrame) -> dict[str, float]:
    """{"<stat>.<column>": value} of a day's events (conformed), plus "rows"."""
    n = len(df)
    out: dict[str, float] = {"rows": float(n)}
    if n == 0:
        return out
    for stat, col in STATS:
        if col not in df:
            continue
        values = df[col]
        if stat == "top_share":
            counts = values.value_counts(dropna=False)
            out[f"{stat}.{col}"] = float(counts.iloc[0]) / n
        elif stat == "distinct_share":
            out[f"{stat}.{col}"] = float(values.nunique(dropna=True)) / n
        else:
            numeric = pd.to_numeric(values, errors="coerce").dropna()
            if len(numeric) > 1:
                out[f"{stat}.{col}"] = float(numeric.mean() if stat == "mean" else numeric.std())
    return out


def check_name(stat: str) -> str:
    """The check a statistic is reported as, by which `validate.policy` names it: `distribution_rating_mean`."""
    kind, col = stat.split(".")
    return f"distribution_{col}_{kind}"


@dataclass(frozen=True)
class Finding:
    stat: str  # "<stat>.<column>"
    value: float
    median: float
    spread: float
    z: float
    days: int
    level: str  # ok | warn | block

    def words(self) -> str:
        stat, col = self.stat.split(".")
        what = {"top_share": "share of the commonest value", "distinct_share": "distinct values per event",
                "mean": "mean", "std": "standard deviation"}[stat]  # fmt: skip
        return (
            f"{col} {what} {self.value:.3f} against a median of {self.median:.3f} over the trailing {self.days} "
            f"days: {self.z:.1f} spreads away (spread {self.spread:.3f}: the days' own variation and this "
            "day's sampling noise)"
        )


def _sampling_sd(stat: str, median: float, n: float, sd_median: float | None) -> float:
    if stat in ("top_share", "distinct_share"):
        p = min(max(median, 1 / n), 1 - 1 / n)  # at least one event's worth away from 0 and 1
        return math.sqrt(p * (1 - p) / n)
    if stat == "mean":
        return (sd_median or 0.0) / math.sqrt(n)
    return (sd_median or 0.0) / math.sqrt(2 * n)


def compare(today: dict[str, float], trailing: list[dict[str, float]], params: dict) -> list[Finding]:
    """Each statistic of `today` against the trailing days' (no band with fewer than `profile_min_days`)."""
    n = today.get("rows", 0.0)
    if n < 2 or len(trailing) < params["profile_min_days"]:
        return []
    sds = [t["std.rating"] for t in trailing if "std.rating" in t]
    sd_median = statistics.median(sds) if sds else None
    out = []
    for stat, col in STATS:
        key = f"{stat}.{col}"
        history = [t[key] for t in trailing if key in t]
        if key not in today or len(history) < params["profile_min_days"]:
            continue
        median = statistics.median(history)
        mad = statistics.median(abs(h - median) for h in history)
        spread = math.hypot(MAD_TO_SD * mad, _sampling_sd(stat, median, n, sd_median))
        z = abs(today[key] - median) / spread if spread > 0 else (0.0 if today[key] == median else math.inf)
        level = "block" if z > params["profile_block_z"] else "warn" if z > params["profile_warn_z"] else "ok"
        out.append(Finding(key, today[key], median, spread, z, len(history), level))
    return out
