"""Daily replay, prequential: stale vs incremental (each trainable set, with and without replay)
vs full retrain, on real data, in one run.

Warm-up: one full training on every event before the window. Then for each day D of the window,
each strategy's current model ranks every event of D (full ranking; the user's history up to that
event as input; tasks.evaluate's code), and only then learns from D: `stale` never does,
`incremental_*` fine-tune from their own previous model (tasks.train, mode incremental), `full`
retrains from scratch on everything through D. Reports mean next-day NDCG@10 / HR@10, the
new-item slice (items first seen in the last 7 days), and training seconds per day.

    python bench/replay.py --events ml100k.parquet --items items.parquet --features <dir> --last 30 \
        --out bench/results/replay_ml-100k.json --plot docs/replay_ml-100k.png
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STRATEGIES = {  # name -> (mode, incremental overrides)
    "stale": (None, {}),
    "incremental_all_replay": ("incremental", {"trainable": "all"}),
    "incremental_all_no_replay": ("incremental", {"trainable": "all", "replay_users": 0}),
    "incremental_top_replay": ("incremental", {"trainable": "top"}),
    "incremental_lora_replay": ("incremental", {"trainable": "lora"}),
    "full": ("full", {}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--items", type=Path, required=True)
    ap.add_argument("--features", type=Path)
    ap.add_argument("--last", type=int, default=30)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plot", type=Path)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a train.incremental param for every incremental strategy, e.g. epochs=10",
    )
    args = ap.parse_args()
    import pandas as pd
    import torch

    from tasks.common import git_commit, load_params
    from tasks.evaluate import build_holdout, metrics_from_ranks, model_ranks
    from tasks.features import load_features
    from tasks.history import day_mask
    from tasks.train import train

    params = load_params()
    events = pd.read_parquet(args.events).sort_values(["event_ts", "user_id", "item_id"], kind="stable")
    events = events.reset_index(drop=True)
    catalogue = pd.read_parquet(args.items)
    features = load_features(args.features) if args.features else {}
    last = events["event_ts"].max().floor("D")
    days = [(last - pd.Timedelta(days=b)).date() for b in range(args.last - 1, -1, -1)]
    work = Path(tempfile.mkdtemp(prefix="freshrec-replay-"))
    names = args.strategies.split(",")

    def through(day):
        return events[events["event_ts"] < pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1)]

    warm_day = days[0] - pd.Timedelta(days=1).to_pytimedelta()
    t0 = time.perf_counter()
    train(
        through(warm_day),
        catalogue,
        warm_day,
        "full",
        params["train"],
        features,
        None,
        work / "warm",
        0.0,
        progress=False,
    )
    warm_seconds = time.perf_counter() - t0
    current = dict.fromkeys(names, work / "warm")
    rows = []
    for i, day in enumerate(days):
        hist = through(day)
        if not day_mask(hist, day).any():
            continue
        hold = build_holdout(hist, day, 1.0, params["train"]["max_len"])  # every event of D, prequentially
        for name in names:
            ranks = model_ranks(current[name], hold)
            m, new = metrics_from_ranks(ranks, 10), metrics_from_ranks(ranks[hold.new_item], 10)
            mode, over = STRATEGIES[name]
            seconds = 0.0
            if mode is not None:
                tparams = copy.deepcopy(params["train"])
                tparams["incremental"].update({k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)})
                tparams["incremental"].update(over)
                out = work / name / str(i)
                t0 = time.perf_counter()
                train(
                    hist,
                    catalogue,
                    day,
                    mode,
                    tparams,
                    features,
                    current[name] if mode == "incremental" else None,
                    out,
                    0.0,
                    progress=False,
                )
                seconds = time.perf_counter() - t0
                current[name] = out
            rows.append(
                {
                    "day": str(day),
                    "strategy": name,
                    "events": m["n"],
                    "ndcg@10": m["ndcg@10"],
                    "hr@10": m["hr@10"],
                    "new_items_n": new["n"],
                    "new_items_ndcg@10": new["ndcg@10"],
                    "train_seconds": round(seconds, 3),
                }
            )
        print(day, " ".join(f"{r['strategy']}={r['ndcg@10']:.4f}" for r in rows if r["day"] == str(day)), flush=True)

    summary = {}
    for name in names:
        rs = [r for r in rows if r["strategy"] == name]
        new = [r for r in rs if r["new_items_n"]]
        summary[name] = {
            "mean_ndcg@10": round(statistics.mean(r["ndcg@10"] for r in rs), 5),
            "mean_hr@10": round(statistics.mean(r["hr@10"] for r in rs), 5),
            "event_weighted_ndcg@10": round(
                sum(r["ndcg@10"] * r["events"] for r in rs) / sum(r["events"] for r in rs), 5
            ),
            "new_items_ndcg@10": round(
                sum(r["new_items_ndcg@10"] * r["new_items_n"] for r in new)
                / max(1, sum(r["new_items_n"] for r in new)),
                5,
            ),
            "train_seconds_per_day": round(statistics.mean(r["train_seconds"] for r in rs), 3),
        }
    full_s = summary.get("full", {}).get("train_seconds_per_day")
    print(f"{'strategy':<27} {'NDCG@10':>8} {'HR@10':>7} {'new-item NDCG':>13} {'train s/day':>11} {'vs full':>8}")
    for name, s in summary.items():
        ratio = f"{s['train_seconds_per_day'] / full_s:.1%}" if full_s else "—"
        print(
            f"{name:<27} {s['mean_ndcg@10']:>8.4f} {s['mean_hr@10']:>7.4f} {s['new_items_ndcg@10']:>13.4f} "
            f"{s['train_seconds_per_day']:>11.2f} {ratio:>8}"
        )
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "command": " ".join(sys.argv),
                "machine": {"device": device},
                "git_commit": git_commit(),
                "days": [str(d) for d in days],
                "warmup_seconds": round(warm_seconds, 1),
                "train_params": params["train"],
                "summary": summary,
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 4))
        for name in names:
            rs = [r for r in rows if r["strategy"] == name]
            ax.plot([r["day"] for r in rs], [r["ndcg@10"] for r in rs], marker=".", label=name)
        ax.set_ylabel("next-day NDCG@10 (full ranking)")
        ax.tick_params(axis="x", rotation=45)
        ax.set_xticks([r["day"] for r in rows if r["strategy"] == names[0]][::3])
        ax.legend(fontsize=7)
        fig.savefig(args.plot, dpi=90, bbox_inches="tight")


if __name__ == "__main__":
    main()
