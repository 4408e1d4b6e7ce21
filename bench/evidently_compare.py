"""freshrec's drift measures next to Evidently's, on the same real ML-100K days.

Three steps, because Evidently (0.7.23; it needs pandas < 3) lives in a throwaway venv of its own:

    python bench/evidently_compare.py export   --dir /tmp/evcmp                 # freshrec's venv
    /tmp/evvenv/bin/python bench/evidently_compare.py evidently --dir /tmp/evcmp  # Evidently's venv
    python bench/evidently_compare.py compare  --dir /tmp/evcmp --out bench/results/evidently_compare.json

Compared per day (reference = the 28 days before it): normed Wasserstein of ratings, Jensen-Shannon
of ratings and of item popularity (raw values), which days each tool flags (Evidently: raw value
>= 0.1; freshrec: excess over its no-drift baseline, see docs/drift.md), and the time per day.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
SIGNALS = {"wasserstein_rating": ("rating", "wasserstein"), "js_rating": ("rating", "jensenshannon"),
           "js_item_popularity": ("item_id", "jensenshannon")}  # fmt: skip


def export(out: Path, last: int) -> None:
    import pandas as pd

    from tasks.drift import decide, measure
    from tasks.params import load_params
    from tasks.sources import load_dataset

    t = load_params()["drift"]
    ev = load_dataset("ml-100k").events
    end = ev["event_ts"].max().floor("D")
    out.mkdir(parents=True, exist_ok=True)
    ours = {}
    for back in range(last - 1, -1, -1):
        day = end - pd.Timedelta(days=back)
        cur = ev[(ev["event_ts"] >= day) & (ev["event_ts"] < day + pd.Timedelta(days=1))]
        before = ev[ev["event_ts"] < day]
        ref = before[before["event_ts"] >= day - pd.Timedelta(days=28)]
        name = str(day.date())
        cols = ["rating", "item_id"]
        ref[cols].to_parquet(out / f"{name}.ref.parquet", index=False)
        cur[cols].to_parquet(out / f"{name}.cur.parquet", index=False)
        t0 = time.perf_counter()
        m = measure(ref, cur, before, set(before["item_id"].unique()), t["psi_bins"])
        _, reasons = decide(m, t, champion=True, ndcg_drop=None)
        ours[name] = {"seconds": time.perf_counter() - t0, "fired": [r.split(" ")[0] for r in reasons],
                      **{k: m[k] for k in SIGNALS}}  # fmt: skip
    (out / "freshrec.json").write_text(json.dumps(ours, indent=1))


def evidently(out: Path) -> None:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    dd = DataDefinition(numerical_columns=["rating"], categorical_columns=["item_id"])
    report = Report([ValueDrift(column=c, method=m) for c, m in SIGNALS.values()])
    theirs = {}
    for ref_file in sorted(out.glob("*.ref.parquet")):
        name = ref_file.name.split(".")[0]
        ref, cur = pd.read_parquet(ref_file), pd.read_parquet(out / f"{name}.cur.parquet")
        t0 = time.perf_counter()
        snap = report.run(Dataset.from_pandas(cur, data_definition=dd), Dataset.from_pandas(ref, data_definition=dd))
        values = [m["value"] for m in snap.dict()["metrics"]]
        theirs[name] = {"seconds": time.perf_counter() - t0, **dict(zip(SIGNALS, values, strict=True))}
    (out / "evidently.json").write_text(json.dumps(theirs, indent=1))


def compare(out: Path, result: Path) -> None:
    ours = json.loads((out / "freshrec.json").read_text())
    theirs = json.loads((out / "evidently.json").read_text())
    days = sorted(ours)
    rows = {}
    for key in SIGNALS:
        a = [ours[d][key] for d in days]
        b = [theirs[d][key] for d in days]
        rows[key] = {
            "max_abs_diff": round(max(abs(x - y) for x, y in zip(a, b, strict=True)), 5),
            "days_evidently_flags": sum(y >= 0.1 for y in b),
            "days_freshrec_flags": sum(key in ours[d]["fired"] for d in days),
        }
    timing = {"freshrec_median_s": round(statistics.median(ours[d]["seconds"] for d in days), 4),
              "evidently_median_s": round(statistics.median(theirs[d]["seconds"] for d in days), 4)}  # fmt: skip
    print(f"{'signal':<20} {'max |ours-theirs|':>18} {'days Evidently flags':>21} {'days freshrec flags':>20}")
    for key, r in rows.items():
        print(f"{key:<20} {r['max_abs_diff']:>18.5f} {r['days_evidently_flags']:>21} {r['days_freshrec_flags']:>20}")
    print(f"of {len(days)} days; time per day (median): {timing}")
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps({"command": " ".join(sys.argv), "days": len(days), "signals": rows,
                                  "timing": timing, "evidently": "0.7.23"}, indent=2) + "\n")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["export", "evidently", "compare"])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--last", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path("bench/results/evidently_compare.json"))
    args = ap.parse_args()
    if args.step == "export":
        export(args.dir, args.last)
    elif args.step == "evidently":
        evidently(args.dir)
    else:
        compare(args.dir, args.out)


if __name__ == "__main__":
    main()
