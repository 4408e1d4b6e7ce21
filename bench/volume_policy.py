"""How many real days the volume policy stops: before (`row_count` blocks) vs now (`row_count` warns,
only `min_rows` blocks), on every day of MovieLens-100K and on MovieLens-1M's densest month.

Replays the days in order with the pipeline's own `tasks.validate.volume_bounds` / `volume_verdict`
over the trailing `validate.volume_window_days` ingested days; a blocked day is quarantined, so it
leaves the trailing window, as in the pipeline. Only the volume checks are simulated (the real
days pass every other check). Prints a table and writes JSON.

    python bench/volume_policy.py --out bench/results/volume_policy.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def day_counts(dataset: str) -> dict[dt.date, int]:
    from tasks.sources import load_dataset

    events = load_dataset(dataset).events
    days = events["event_ts"].dt.tz_convert("UTC").dt.date.value_counts()
    first, last = min(days.index), max(days.index)
    return {first + dt.timedelta(d): int(days.get(first + dt.timedelta(d), 0)) for d in range((last - first).days + 1)}


def densest(counts: dict[dt.date, int], length: int = 30) -> list[dt.date]:
    days = sorted(counts)
    sums = [sum(counts[d] for d in days[i : i + length]) for i in range(len(days) - length + 1)]
    start = max(range(len(sums)), key=sums.__getitem__)
    return days[start : start + length]


def replay(counts: dict[dt.date, int], measured: list[dt.date], params: dict, blocking: set[str]) -> list[dict]:
    """Walk every day up to the last measured one; record the verdicts of the measured days."""
    from tasks.validate import volume_bounds, volume_verdict

    kept: dict[dt.date, int] = {}
    out = []
    for day in sorted(d for d in counts if d <= measured[-1]):
        window = [
            kept[day - dt.timedelta(b)]
            for b in range(1, params["volume_window_days"] + 1)
            if day - dt.timedelta(b) in kept
        ]
        band = volume_bounds(window, params)
        rows = counts[day]
        failed = []
        if rows < band["min_rows"]:
            failed.append("min_rows")
        elif band["median"] is not None and not band["low"] <= rows <= band["high"]:
            failed.append("row_count")
        stops = any(c in blocking for c in failed)
        if not stops:
            kept[day] = rows
        if day >= measured[0]:
            out.append(
                {"day": str(day), "rows": rows, "failed": failed, "stops": stops, "why": volume_verdict(rows, band)}
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from tasks.common import git_commit
    from tasks.params import load_params

    params = load_params()["validate"]
    warn = {k for k, v in (params.get("policy") or {}).items() if v == "warn"}
    before, after = {"min_rows", "row_count"}, {"min_rows", "row_count"} - warn
    results = {}
    for name, dataset, pick in (("ML-100K, every day", "ml-100k", sorted), ("ML-1M, densest month", "ml-1m", densest)):
        counts = day_counts(dataset)
        measured = pick(counts)
        rows = {"before": replay(counts, measured, params, before), "now": replay(counts, measured, params, after)}
        results[name] = {
            "days": len(measured),
            "from": str(measured[0]),
            "to": str(measured[-1]),
            "stop_before": sum(r["stops"] for r in rows["before"]),
            "stop_now": sum(r["stops"] for r in rows["now"]),
            "warn_now": sum(bool(r["failed"]) and not r["stops"] for r in rows["now"]),
            "stopped_now": [r for r in rows["now"] if r["stops"]],
            "warned_now": [r for r in rows["now"] if r["failed"] and not r["stops"]],
            "stopped_before": [r for r in rows["before"] if r["stops"]],
        }
    head = f"{'data':<24} {'days':>5} {'stop before':>12} {'stop now':>9} {'warn now':>9}"
    print(head + "\n" + "-" * len(head))
    for name, r in results.items():
        print(f"{name:<24} {r['days']:>5} {r['stop_before']:>12} {r['stop_now']:>9} {r['warn_now']:>9}")
    for name, r in results.items():
        for row in r["stopped_now"]:
            print(f"  {name}: {row['day']} still stops: {row['why']}")
    args.out.write_text(
        json.dumps(
            {"policy_now": sorted(after), "policy_before": sorted(before), "commit": git_commit(), "results": results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
