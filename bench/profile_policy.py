"""How the distribution checks (tasks/profile.py) judge real days, and what they catch: the bands of
`validate.profile_warn_z` / `profile_block_z` chosen on evidence.

For every day of MovieLens-100K and MovieLens-1M with at least `profile_min_days` trailing ingested days,
in order, the day's profile is compared with its trailing `volume_window_days` days exactly as
`validate_events` does. A real day is a good day, so every warning on one is a false positive, and every
block a false refusal. Then each real day is made bad in the ways that pass every row-level check (one
rating for 95 % of its events, one item for 90 %, one user for 90 %, ratings shifted by one star where
they can be), and the share caught is reported per fault and day size, each verdict under
`validate.policy` (a block on a check the policy warns on is a warning). Prints tables and writes JSON.

    python bench/profile_policy.py --out bench/results/profile_policy.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def days_of(dataset: str) -> list[pd.DataFrame]:
    from tasks.sources import load_dataset

    events = load_dataset(dataset).events
    day = events["event_ts"].dt.tz_convert("UTC").dt.date
    return [g.reset_index(drop=True) for _, g in events.groupby(day, sort=True)]


def _collapse(col: str, share: float):
    def make(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = df.copy()
        value = df[col].value_counts().index[-1]  # a value the day has, not its commonest
        rows = rng.random(len(df)) < share
        out.loc[rows, col] = value
        return out

    return make


def _shift(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:  # every rating one star up, capped at 5
    return df.assign(rating=np.minimum(df["rating"] + 1, 5).astype(df["rating"].dtype))


FAULTS = {
    "rating_collapse_95": _collapse("rating", 0.95),
    "item_collapse_90": _collapse("item_id", 0.90),
    "user_collapse_90": _collapse("user_id", 0.90),
    "ratings_one_star_up": _shift,
}
SIZES = ((1, 50), (50, 500), (500, 10**9))


def _level(findings, warn_only: set[str]) -> str:
    """The day's verdict as validate_events gives it: a block on a check the policy warns on is a warning."""
    from tasks.profile import check_name

    levels = ["warn" if f.level == "block" and check_name(f.stat) in warn_only else f.level for f in findings]
    return max(levels, key=["ok", "warn", "block"].index, default="ok")


def replay(days: list[pd.DataFrame], params: dict, rng: np.random.Generator) -> dict:
    from tasks.profile import compare, profile

    warn_only = {k for k, v in params["policy"].items() if v == "warn"}
    profiles = [profile(d) for d in days]
    window = params["volume_window_days"]
    levels, worst, by_stat, caught = [], [], {}, {f: {s: [] for s in SIZES} for f in FAULTS}
    for i, day in enumerate(days):
        trailing = profiles[max(0, i - window) : i]
        findings = compare(profiles[i], trailing, params)
        if not findings:
            continue
        for f in findings:
            by_stat.setdefault(f.stat, []).append(f.z)
        worst.append(max(f.z for f in findings))
        levels.append(_level(findings, warn_only))
        size = next(s for s in SIZES if s[0] <= len(day) < s[1])
        for name, make in FAULTS.items():
            caught[name][size].append(_level(compare(profile(make(day, rng)), trailing, params), warn_only))
    n = len(levels)
    return {
        "days_judged": n,
        "warn_rate": sum(lv != "ok" for lv in levels) / n,
        "block_rate": sum(lv == "block" for lv in levels) / n,
        "z_quantiles": {q: float(np.quantile(worst, q)) for q in (0.5, 0.9, 0.95, 0.99, 1.0)},
        "z_p99_by_stat": {k: float(np.quantile(v, 0.99)) for k, v in sorted(by_stat.items())},
        "caught": {
            name: {
                f"{lo}-{hi if hi < 10**9 else 'inf'} events": {
                    "days": len(v),
                    "blocked": sum(x == "block" for x in v) / max(len(v), 1),
                    "warned_or_blocked": sum(x != "ok" for x in v) / max(len(v), 1),
                }
                for (lo, hi), v in sizes.items()
            }
            for name, sizes in caught.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-1m"])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from tasks.common import git_commit
    from tasks.params import load_params

    params = load_params()["validate"]
    out = {"command": " ".join(["bench/profile_policy.py", *sys.argv[1:]]), "git_commit": git_commit(),
           "params": {k: params[k] for k in ("volume_window_days", "profile_min_days", "profile_warn_z",
                                             "profile_block_z")}, "datasets": {}}  # fmt: skip
    for name in args.datasets:
        res = replay(days_of(name), params, np.random.default_rng(0))
        out["datasets"][name] = res
        print(f"\n{name}: {res['days_judged']} real days judged; warned {res['warn_rate']:.1%}, "
              f"blocked {res['block_rate']:.1%}; worst z per day: " +
              ", ".join(f"p{int(q * 100)} {z:.1f}" for q, z in res["z_quantiles"].items()))  # fmt: skip
        print("  p99 z by statistic: " + ", ".join(f"{k} {v:.1f}" for k, v in res["z_p99_by_stat"].items()))
        print(f"  {'fault':<22} {'day size':<16} {'days':>5} {'blocked':>8} {'warn+block':>10}")
        for fault, sizes in res["caught"].items():
            for size, r in sizes.items():
                print(f"  {fault:<22} {size:<16} {r['days']:>5} {r['blocked']:>8.0%} {r['warned_or_blocked']:>10.0%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
