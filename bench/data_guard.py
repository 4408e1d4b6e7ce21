"""Data guard speed: validating a 1,000,000-event day (both GX suites, Data Docs included) and
computing its drift measures, median of several runs, on this machine.

The day is real MovieLens-1M (1,000,209 ratings, 6,040 users, 3,706 items) re-stamped into one
UTC day in its original order; the drift reference is the same data spread over the 28 days
before it. Validation includes every check: the distribution checks against the trailing 14 days'
partitions and the replay check against a key index of 1,000,209 earlier events (`trailing_history`).
Beside it, the replay check of a 20,000-event day against ML-1M's whole history, with the key index and
by re-reading every partition (`replay_check_cost`). GX is imported once before timing (a warm
worker); each validation builds its own ephemeral context, as the pipeline does. Drift = measures +
decision (PSI, normed Wasserstein, JS with their user-day no-drift baselines, popularity JS with its
baseline, new items/users), without the champion-dependent parts (NDCG, representation MMD), which
scale with users, not events.

    python bench/data_guard.py --repeats 5 --out bench/results/data_guard.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DAY = dt.date(2003, 3, 1)


def trailing_history(layout, reference, window: int) -> None:
    """What the day is validated against, at the scale of a long history: the trailing `window` days'
    partitions (the distribution checks read them) and a key index of 1,000,209 earlier events (the replay
    check reads it). The reference's users are renamed (`<id>-r`) so its keys are not the day's: the same
    ratings under the same keys would be replays."""
    from tasks.event_keys import KEYS_FILE, KeyIndex, key_hashes
    from tasks.replay import EVENTS_FILE

    earlier = reference.assign(user_id=reference["user_id"] + "-r")
    days = earlier["event_ts"].dt.date
    index = KeyIndex.empty()
    for day, events in earlier.groupby(days, sort=True):
        index = index.add(key_hashes(events, ["user_id", "item_id"]), day)
        if day >= DAY - dt.timedelta(days=window):
            layout.raw(day).mkdir(parents=True, exist_ok=True)
            events.to_parquet(layout.raw(day) / EVENTS_FILE, index=False)
    folder = layout.index("event_keys", DAY - dt.timedelta(days=1))
    folder.mkdir(parents=True)
    index.save(folder / KEYS_FILE)


def replay_check_cost(events, repeats: int) -> dict:
    """The replay check of one ML-1M-sized day (20,000 events) against the key index of the whole ML-1M
    history (1,000,209 keys): load the index, look every event up. Beside it, what the check would cost
    without an index: every daily partition's keys read again (ML-1M's 1,038 days, from local Parquet)."""
    import pandas as pd

    from tasks.event_keys import KEYS_FILE, KeyIndex, key_hashes, replay_days
    from tasks.replay import EVENTS_FILE

    tmp = Path(tempfile.mkdtemp(prefix="freshrec-bench-keys-"))
    days = events["event_ts"].dt.date
    index = KeyIndex.empty()
    for i, (day, part) in enumerate(events.groupby(days, sort=True)):
        index = index.add(key_hashes(part, ["user_id", "item_id"]), day)
        (tmp / f"date={i:04d}").mkdir()
        part.to_parquet(tmp / f"date={i:04d}" / EVENTS_FILE, index=False)
    index.save(tmp / KEYS_FILE)
    day = events.sample(20_000, random_state=0).assign(user_id=lambda d: d["user_id"] + "-new")
    with_index, without = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        found = replay_days(KeyIndex.load(tmp / KEYS_FILE), key_hashes(day, ["user_id", "item_id"]), day.index)
        with_index.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        seen = set()
        for part in sorted(tmp.glob("date=*")):
            keys = pd.read_parquet(part / EVENTS_FILE, columns=["user_id", "item_id"])
            seen.update(zip(keys["user_id"], keys["item_id"], strict=True))
        _ = [k in seen for k in zip(day["user_id"], day["item_id"], strict=True)]
        without.append(time.perf_counter() - t0)
    assert found.isna().all()
    return {
        "day_events": len(day),
        "history_keys": len(index),
        "history_partitions": len(list(tmp.glob("date=*"))),
        "index_bytes": (tmp / KEYS_FILE).stat().st_size,
        "with_index_median_s": round(statistics.median(with_index), 4),
        "rereading_history_median_s": round(statistics.median(without), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations  # noqa: F401  - imported once, like a warm worker
    import pandas as pd
    import scipy.spatial.distance
    import scipy.stats  # noqa: F401  - likewise

    from tasks.common import Layout, day_bounds, git_commit
    from tasks.drift import decide, measure
    from tasks.params import load_params
    from tasks.replay import EVENTS_FILE, ITEMS_FILE
    from tasks.sources import load_dataset
    from tasks.validate import validate_day

    params = load_params()
    vparams = {**params["validate"], "max_events_per_user_day": 10**7}  # a whole dataset in one day
    data = load_dataset("ml-1m")
    events = data.events.copy()
    start, _ = day_bounds(DAY)
    n = len(events)
    events["event_ts"] = pd.to_datetime(start + (pd.RangeIndex(n) * 86_399 // n), unit="s", utc=True)
    reference = data.events.copy()
    ref_start = start - 28 * 86_400
    reference["event_ts"] = pd.to_datetime(ref_start + (pd.RangeIndex(n) * (28 * 86_400 - 1) // n), unit="s", utc=True)

    tmp = Path(tempfile.mkdtemp(prefix="freshrec-bench-"))
    layout = Layout(tmp / "data")
    trailing_history(layout, reference, params["validate"]["volume_window_days"])
    validate_s, drift_s = [], []
    for _ in range(args.repeats):
        layout.raw(DAY).mkdir(parents=True, exist_ok=True)
        layout.items(DAY).mkdir(parents=True, exist_ok=True)
        events.to_parquet(layout.raw(DAY) / EVENTS_FILE, index=False)
        data.items.to_parquet(layout.items(DAY) / ITEMS_FILE, index=False)
        t0 = time.perf_counter()
        res = validate_day(DAY, layout, vparams)
        validate_s.append(time.perf_counter() - t0)
        assert res.passed, res.failures
        t0 = time.perf_counter()
        m = measure(reference, events, reference, set(reference["item_id"]), params["drift"]["psi_bins"])
        decision, _ = decide(m, params["drift"], champion=True, ndcg_drop=None)
        drift_s.append(time.perf_counter() - t0)
    report = {
        "command": " ".join(sys.argv),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "git_commit": git_commit(),
        "events": n,
        "repeats": args.repeats,
        "validate_seconds": [round(s, 3) for s in validate_s],
        "validate_median_s": round(statistics.median(validate_s), 3),
        "drift_seconds": [round(s, 3) for s in drift_s],
        "drift_median_s": round(statistics.median(drift_s), 3),
        "targets": {"validate_s": 5.0, "drift_s": 2.0},
        "drift_decision_on_this_day": decision,
        "validation_warnings": [w["check"] for w in res.warnings],
        "replay_check": replay_check_cost(data.events, args.repeats),
    }
    print(f"{'step':<10} {'median s':>9}  {'runs':<40} target")
    print(f"{'validate':<10} {report['validate_median_s']:>9.3f}  {report['validate_seconds']!s:<40} <= 5 s")
    print(f"{'drift':<10} {report['drift_median_s']:>9.3f}  {report['drift_seconds']!s:<40} <= 2 s")
    rc = report["replay_check"]
    print(f"replay check, a {rc['day_events']:,}-event day against {rc['history_keys']:,} earlier keys: "
          f"{rc['with_index_median_s'] * 1000:.1f} ms with the index ({rc['index_bytes'] / 1e6:.1f} MB), "
          f"{rc['rereading_history_median_s']:.2f} s re-reading {rc['history_partitions']:,} partitions")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
