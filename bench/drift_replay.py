"""Drift decisions over real MovieLens days: what the monitor says, day by day, on real shifts.

For each day D of the window, reference = the 28 days before D (the window a daily-updated
champion was trained on), current = D; the champion's catalogue = items seen before D. Prints
one row per day (events, users, the signals that fired, the decision) and writes JSON.

    python bench/drift_replay.py --dataset ml-100k --last 30 --out bench/results/drift_replay_ml100k.json
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--last", type=int, default=30, help="the dataset's last N days")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import pandas as pd

    from tasks.common import git_commit
    from tasks.drift import decide, measure
    from tasks.params import load_params
    from tasks.sources import load_dataset

    t = load_params()["drift"]
    ev = load_dataset(args.dataset).events
    last = ev["event_ts"].max().floor("D")
    rows = []
    for back in range(args.last - 1, -1, -1):
        day = last - pd.Timedelta(days=back)
        current = ev[(ev["event_ts"] >= day) & (ev["event_ts"] < day + pd.Timedelta(days=1))]
        before = ev[ev["event_ts"] < day]
        reference = before[before["event_ts"] >= day - pd.Timedelta(days=28)]
        t0 = time.perf_counter()
        m = measure(reference, current, before, set(before["item_id"].unique()), t["psi_bins"])
        decision, reasons = decide(m, t, champion=True, ndcg_drop=None)
        fired = [r.split(" ")[0] for r in reasons if not r.startswith(("no ", "only "))]
        rows.append({"day": str(day.date()), "events": m["events"], "users": m["users"], "decision": decision,
                     "fired": fired, "js_item_popularity_excess": m["js_item_popularity_excess"],
                     "new_item_share": m["new_item_share"], "seconds": round(time.perf_counter() - t0, 3),
                     "reasons": reasons})  # fmt: skip
    print(f"{'day':<10} {'events':>6} {'users':>5} {'decision':<11} signals")
    for r in rows:
        print(f"{r['day']:<10} {r['events']:>6} {r['users']:>5} {r['decision']:<11} {', '.join(r['fired']) or '—'}")
    counts = collections.Counter(r["decision"] for r in rows)
    signals = collections.Counter(s for r in rows for s in r["fired"])
    print("decisions:", dict(counts), " signals:", dict(signals))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "git_commit": git_commit(),
                                    "generated": str(dt.date.today()), "decisions": dict(counts),
                                    "signals": dict(signals), "days": rows}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
