"""Daily replay, prequential: stale vs incremental (each trainable set, with and without replay)
vs full retrain, on real data, in one run.

Warm-up: one full training on every event before the window. Then for each day D of the window,
each strategy's current model ranks every event of D (full ranking; the user's history up to that
event as input; tasks.evaluate's code), and only then learns from D: `stale` never does,
`incremental_*` fine-tune from their own previous model (tasks.train, mode incremental, the
recipe in params.yaml `train.incremental` with the strategy's trainable set and replay), `full`
retrains from scratch on everything through D (`train.full`). Reports mean next-day NDCG@10 /
HR@10, the new-item slice (items first seen in the last 7 days), training seconds and sequence
passes (examples x epochs) per day, and the stale model's decline against full retraining. The same
ranks are also taken as the exported graph serves them with `export.exclude_seen` (the items of the
user's input window never recommended): `window_excluded_ndcg@10` / `_hr@10`, from the same models.

    python bench/replay.py --dataset ml-100k --days 30 --out bench/results/replay_ml-100k.json \
        --plot docs/replay_ml-100k.png
    python bench/replay.py --dataset ml-1m --window densest --days 7 --out bench/results/replay_ml-1m.json

The JSON report is rewritten (atomically) after every day with the days done so far and
`"complete": false`, so a multi-hour run that dies keeps what it measured; with `--work DIR` the models
are kept too, and the same command continues a stopped run after its last finished day (a training it
was stopped in, the warm-up included, resumes from its last checkpoint, at most `train.checkpoint_seconds`
back). `--warm DIR` starts from another run's warm-up over the same window (its <work>/warm) instead of
training one.

`--set train.incremental.lr=1e-4` overrides any params.yaml value for the whole run;
`--variant NAME:lr=1e-4,epochs=1` adds an incremental strategy with its own recipe (to compare
recipes in one run), `--variant NAME:mode=full,bucketing=true` a daily full retrain with its own;
`--end YYYY-MM-DD` picks the window by its last day. `--combine A.json B.json --out C.json` pools
runs that share a warm-up (a window split across sessions, recipes run later): rows both runs
measured must agree, or nothing is pooled. A change that needs its own warm-up (the model's
layers: `--set train.block=ligr`) is a second run over the same window, set beside the first day by
day with `--compare BASE.json NEW.json --out C.json`.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchdata import add_data_args, device_name, features_for, load_data

COMPARED = ("ndcg@10", "window_excluded_ndcg@10")  # as ranked, and as served (the input window excluded)
DEFAULT = "incremental_all_replay"  # train.incremental as params.yaml had it before the bounded replay
STRATEGIES = {  # name -> (mode, train.incremental overrides)
    "stale": (None, {}),
    "incremental_all_replay": ("incremental", {"trainable": "all"}),
    "incremental_all_no_replay": ("incremental", {"trainable": "all", "replay_users": 0}),
    "incremental_top_replay": ("incremental", {"trainable": "top"}),
    "incremental_top_no_replay": ("incremental", {"trainable": "top", "replay_users": 0}),
    "incremental_lora_replay": ("incremental", {"trainable": "lora"}),
    "incremental_lora_no_replay": ("incremental", {"trainable": "lora", "replay_users": 0}),
    "full": ("full", {}),
}


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare word: all, lora, warmup_cosine ...


def set_dotted(params: dict, assignment: str) -> None:
    key, _, value = assignment.partition("=")
    *parents, leaf = key.split(".")
    node = params
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise SystemExit(f"--set {assignment}: {key} is not a params.yaml key")
        node = node[part]
    if leaf not in node:
        raise SystemExit(f"--set {assignment}: {key} is not a params.yaml key")
    node[leaf] = parse_value(value)


def parse_variant(text: str) -> tuple[str, tuple[str, dict]]:
    """NAME:KEY=VALUE,... -> (NAME, (mode, overrides)): an incremental strategy whose recipe is
    `train.incremental` with the overrides, or with `mode=full` a daily full retrain on `train.full`."""
    name, _, body = text.partition(":")
    over = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in body.split(",") if kv)}
    mode = over.pop("mode", "incremental")
    if mode not in ("incremental", "full"):
        raise SystemExit(f"--variant {text}: mode must be incremental or full, not {mode!r}")
    return name, (mode, over)


def check_variants(variants: dict, train_params: dict) -> None:
    """A variant may set only what its section (or the training recipe) knows: a typo fails loudly."""
    from dataclasses import fields

    from tasks.train import Recipe

    recipe = {f.name for f in fields(Recipe)} | {"lr_schedule"}
    for name, (mode, over) in variants.items():
        unknown = sorted(set(over) - set(train_params[mode]) - recipe)
        if unknown:
            raise SystemExit(f"--variant {name}: {unknown} are not keys of train.{mode} nor of a training recipe")


def window_days(events, n: int, where: str, end=None) -> list:
    """The n days ending on `end`, else the last n days of the data, or the n consecutive days
    with the most events."""
    import pandas as pd

    day = events["event_ts"].dt.floor("D")
    if end is not None:
        end = pd.Timestamp(end, tz="UTC")
    elif where == "last":
        end = day.max()
    else:
        counts = day.value_counts().sort_index().asfreq("D", fill_value=0)
        end = counts.rolling(n).sum().idxmax()
    return [(end - pd.Timedelta(days=b)).date() for b in range(n - 1, -1, -1)]


def stale_decline(rows: list[dict], days: list[str]) -> dict:
    """How far the never-updated model falls behind a daily full retrain, over the window."""
    by = {(r["day"], r["strategy"]): r for r in rows}
    both = [d for d in days if (d, "stale") in by and (d, "full") in by]
    gaps = [by[d, "stale"]["ndcg@10"] - by[d, "full"]["ndcg@10"] for d in both]
    third = max(1, len(gaps) // 3)
    xs = list(range(len(gaps)))
    slope = statistics.linear_regression(xs, gaps).slope if len(gaps) > 1 else float("nan")
    return {
        "gap_first_third": round(statistics.mean(gaps[:third]), 5),
        "gap_last_third": round(statistics.mean(gaps[-third:]), 5),
        "gap_slope_per_day": round(slope, 6),
        "note": "stale minus full next-day NDCG@10 (negative: stale is behind)",
    }


def resume_state(work: Path, days: list, names: list[str], done: dict) -> tuple[list[dict], dict | None, dict]:
    """What an earlier run of the same replay left in `work` and its partial report `done`: (rows, warm-up,
    each strategy's current model). The models of the last finished day are kept in `work`, so a run that
    was stopped continues after it (the day it was in is measured again)."""
    if not done or not (work / "warm" / "items.json").exists():
        return [], None, dict.fromkeys(names, work / "warm")
    day_index = {str(d): i for i, d in enumerate(days)}
    last = max(day_index[r["day"]] for r in done["rows"]) if done["rows"] else -1
    current = {}
    for strategy in names:
        trained = [i for i in range(last + 1) if (work / strategy / str(i) / "items.json").exists()]
        current[strategy] = work / strategy / str(trained[-1]) if trained else work / "warm"
    return list(done["rows"]), done["warmup"], current


def train_resumably(hist, catalogue, day, mode: str, tparams: dict, features, champion, out: Path) -> tuple[float, int]:
    """Train one strategy's model for `day` into `out`, resumable at any instant; (seconds, passes).

    A daily full retrain on ML-1M takes 20-60 minutes, so a replay that stops (a session's end, a kill)
    mid-training must not lose it: the training checkpoints into `<out>.checkpoint` every
    `train.checkpoint_seconds` and the next run resumes there (tasks/checkpoint.py: on CPU the same
    weights, bit for bit). `<out>.seconds.json` keeps the seconds spent before this attempt, so the
    reported time is the training's whole time: every attempt's time up to its last checkpoint, plus the
    finishing attempt's. A model already saved in `out` (a stop between saving it and reporting the day)
    is kept, not trained again."""
    from tasks.common import read_json, write_json
    from tasks.train import TIMING_FILE, train
    from tasks.units import MODEL_ITEMS_FILE, TRAIN_FILE

    spent = out.with_name(out.name + ".seconds.json")
    record = read_json(spent) if spent.exists() else {"carried": 0.0, "seconds": 0.0}
    if (out / MODEL_ITEMS_FILE).exists():  # the attempt that saved it started after `carried` seconds
        report, timing = read_json(out / TRAIN_FILE), read_json(out / TIMING_FILE)
        return record["carried"] + timing["seconds"], report["examples"] * report["epochs"]
    before = record["seconds"]
    write_json(spent, {"carried": before, "seconds": before})
    t0 = time.perf_counter()

    def checkpointed(_path: Path) -> None:
        write_json(spent, {"carried": before, "seconds": round(before + time.perf_counter() - t0, 3)})

    checkpoints = out.with_name(out.name + ".checkpoint")
    res = train(hist, catalogue, day, mode, tparams, features, champion, out, 0.0, progress=False,
                checkpoint_dir=checkpoints, on_checkpoint=checkpointed)  # fmt: skip
    shutil.rmtree(checkpoints, ignore_errors=True)  # train cleared the checkpoint once the model was saved
    return before + time.perf_counter() - t0, res.examples * res.epochs


def shared_warmup(src: Path, through: dt.date, train_params: dict, dest: Path) -> dict:
    """Start from another run's finished warm-up (its `--work`/warm) instead of training one: copied into
    `dest`, after checking it is a full training through the day before this window, with this run's
    epochs and model shape (what the model folder records). The rest of the recipe (learning rate, batch
    size, seed) is not recorded there: the caller vouches for it, and `--combine` refuses to pool the
    runs if their first day's ranks disagree."""
    from tasks.common import atomic_dir, read_json
    from tasks.train import TIMING_FILE
    from tasks.units import MODEL_ITEMS_FILE, TRAIN_FILE

    if not (src / MODEL_ITEMS_FILE).exists():
        raise SystemExit(f"--warm {src}: no trained model there (no {MODEL_ITEMS_FILE}): give a replay's <work>/warm")
    report, config = read_json(src / TRAIN_FILE), read_json(src / "config.json")
    want = {"mode": "full", "day": str(through), "epochs": train_params["full"]["epochs"]}
    want_shape = {k: train_params[k] for k in ("max_len", "hidden_size", "num_layers", "num_heads", "dropout")}
    wrong = {k: report.get(k) for k, v in want.items() if report.get(k) != v}
    wrong |= {k: config.get(k) for k, v in want_shape.items() if config.get(k) != v}
    if wrong:
        raise SystemExit(f"--warm {src}: not this run's warm-up: it has {wrong}, this run needs "
                         f"{ {k: (want | want_shape)[k] for k in wrong} }")  # fmt: skip
    with atomic_dir(dest) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    seconds = read_json(src / TIMING_FILE)["seconds"]
    passes = report["examples"] * report["epochs"]
    return {"through": str(through), "seconds": seconds, "passes": passes, "from": str(src)}


def replay(
    events,
    catalogue,
    features,
    days,
    names,
    strategies,
    params,
    work: Path,
    on_day=None,
    done=None,
    warm_from: Path | None = None,
):
    """Warm up, then rank each day with every strategy's current model and let each learn from it.

    `on_day(rows, warmup)` runs after each day with every row so far (the partial report hook); `done`, the
    partial report of an earlier run over the same `work`, is continued from its last finished day;
    `warm_from`, another run's warm-up over the same window, is used instead of training one."""
    import pandas as pd
    import torch

    from tasks.evaluate import build_holdout, metrics_from_ranks, model_ranks
    from tasks.history import day_mask

    def through(day):
        return events[events["event_ts"] < pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1)]

    rows, warmup, current = resume_state(work, days, names, done)
    held = [n for n in names if (work / n).exists()]
    if done is None and held:  # their models would be taken for this run's
        raise SystemExit(
            f"--work {work} holds the models of a finished or another run ({held}), and --out has no unfinished "
            "report of it to continue: give an empty --work (or delete it) to run again"
        )
    if warmup is None and warm_from is not None:
        warmup = shared_warmup(warm_from, days[0] - dt.timedelta(days=1), params["train"], work / "warm")
    if warmup is None:  # an hour on ML-1M: resumable like every training
        warm_day = days[0] - pd.Timedelta(days=1).to_pytimedelta()
        seconds, passes = train_resumably(through(warm_day), catalogue, warm_day, "full", params["train"], features,
                                          None, work / "warm")  # fmt: skip
        warmup = {"through": str(warm_day), "seconds": round(seconds, 3), "passes": passes}
    if not rows and on_day is not None:  # the warm-up is an hour on ML-1M: reported before the first day
        on_day(rows, warmup)
    finished = {r["day"] for r in rows}
    if finished:
        print(f"continuing after {max(finished)} ({len(finished)} days done)", flush=True)
    for i, day in enumerate(days):
        if str(day) in finished:
            continue
        hist = through(day)
        if not day_mask(hist, day).any():
            continue
        hold = build_holdout(hist, day, 1.0, params["train"]["max_len"])  # every event of D, prequentially
        for strategy in names:
            ranks = model_ranks(current[strategy], hold, "nothing", "window")  # one pass, both rankings
            m, new = metrics_from_ranks(ranks["nothing"], 10), metrics_from_ranks(ranks["nothing"][hold.new_item], 10)
            served = metrics_from_ranks(ranks["window"], 10)
            mode, over = strategies[strategy]
            seconds, passes = 0.0, 0
            if mode is not None and i < len(days) - 1:  # after the last day nothing is ranked: no training
                tparams = copy.deepcopy(params["train"])
                tparams[mode].update(over)
                out = work / strategy / str(i)
                start = current[strategy] if mode == "incremental" else None
                seconds, passes = train_resumably(hist, catalogue, day, mode, tparams, features, start, out)
                current[strategy] = out
            rows.append(
                {
                    "day": str(day),
                    "strategy": strategy,
                    "events": m["n"],
                    "ndcg@10": m["ndcg@10"],
                    "hr@10": m["hr@10"],
                    "new_items_n": new["n"],
                    "new_items_ndcg@10": new["ndcg@10"],
                    "new_items_hr@10": new["hr@10"],
                    "window_excluded_ndcg@10": served["ndcg@10"],
                    "window_excluded_hr@10": served["hr@10"],
                    "train_seconds": round(seconds, 3),
                    "train_passes": passes,
                    "threads": torch.get_num_threads(),  # a run continued in another session may use other threads
                }
            )
        print(day, " ".join(f"{r['strategy']}={r['ndcg@10']:.4f}" for r in rows if r["day"] == str(day)), flush=True)
        if on_day is not None:
            on_day(rows, warmup)
    return rows, warmup


def _defaults(model) -> dict:
    """Every key of a params section's model with its default (nested sections as dicts)."""
    from pydantic import BaseModel

    out = {}
    for name, field in model.model_fields.items():
        kind = field.annotation
        out[name] = _defaults(kind) if isinstance(kind, type) and issubclass(kind, BaseModel) else field.default
    return out


def _same(key: str, old, new) -> bool:
    """Two runs' `key` agree; for train_params, a key the earlier run's code did not have yet counts as
    agreeing when it is at its default (a knob is added with the behaviour it had before as its default)."""
    if key != "train_params" or not isinstance(old, dict):
        return old == new
    from tasks.params import TrainParams

    def agree(a: dict, b: dict, defaults: dict) -> bool:
        for k in set(a) | set(b):
            if k not in a:
                if b[k] != defaults.get(k):
                    return False
            elif isinstance(a[k], dict) and isinstance(b.get(k), dict):
                if not agree(a[k], b[k], defaults.get(k) or {}):
                    return False
            elif a[k] != b.get(k):
                return False
        return True

    return agree(old, new, _defaults(TrainParams))


def earlier_run(out: Path, head: dict) -> dict | None:
    """The partial report at `out` of the same replay (dataset, days, strategies, params), to continue; None
    if there is none. A report of another replay is refused, not overwritten."""
    from tasks.common import read_json

    if not out.exists():
        return None
    done = read_json(out)
    same = ("dataset", "days", "train_params", "strategies")
    diff = [k for k in same if not _same(k, done.get(k), head[k])]
    if diff:
        raise SystemExit(f"--work: {out} is the report of another replay (its {diff} differ): give another --out")
    return None if done.get("complete") else done


def paired_ci(a, b, draws: int = 2000, seed: int = 0) -> list[float] | None:
    """90 % interval of (mean of a / mean of b - 1), a and b paired by day, by a bootstrap over days. A draw
    whose days all score 0 for b has no ratio and is left out; None if every draw is such."""
    import numpy as np

    a, b = np.asarray(a, float), np.asarray(b, float)
    idx = np.random.default_rng(seed).integers(0, len(a), size=(draws, len(a)))
    den = b[idx].mean(1)
    ratios = (a[idx].mean(1) / np.where(den > 0, den, 1) - 1)[den > 0]
    return [round(float(q), 4) for q in np.quantile(ratios, [0.05, 0.95])] if len(ratios) else None


def vs_full_ci(rows: list[dict], strategy: str, draws: int = 2000, seed: int = 0) -> list[float]:
    """90 % interval of (mean NDCG@10 / full's - 1), by a paired bootstrap over the window's days."""
    by = {(r["day"], r["strategy"]): r["ndcg@10"] for r in rows}
    days = [r["day"] for r in rows if r["strategy"] == strategy and (r["day"], "full") in by]
    return paired_ci([by[d, strategy] for d in days], [by[d, "full"] for d in days], draws, seed)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap, "ml-100k")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--window", choices=["last", "densest"], default="last")
    ap.add_argument("--end", type=dt.date.fromisoformat, help="the window's last day (YYYY-MM-DD) instead of --window")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...")
    ap.add_argument("--set", action="append", default=[], metavar="DOTTED.KEY=VALUE")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, help="keep the models here; a stopped run given the same --work and --out "
                    "continues after its last finished day")  # fmt: skip
    ap.add_argument("--warm", type=Path, metavar="DIR",
                    help="start from another run's warm-up over the same window (its <work>/warm) instead of "
                    "training one: e.g. a second seed's full retrain beside its bounded run")  # fmt: skip
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--combine", type=Path, nargs="+", metavar="REPORT",
                    help="pool the rows of earlier runs' reports into --out instead of running")  # fmt: skip
    ap.add_argument("--tolerance", type=float, default=0.0,
                    help="with --combine: how far a row two runs both measured may differ (NDCG@10)")  # fmt: skip
    ap.add_argument("--compare", type=Path, nargs=2, metavar=("BASE", "NEW"),
                    help="pair two complete runs day by day (a change needing its own warm-up)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.combine and args.compare:
        raise SystemExit("--combine and --compare are two different jobs: give one")
    if args.compare:
        from tasks.common import write_json

        report = compare(*args.compare)
        print_comparison(report)
        write_json(args.out, report)
        return report
    if args.combine:
        from tasks.common import write_json

        report = combine(args.combine, args.tolerance)
        print_table(report)
        write_json(args.out, report)
        if args.plot:
            plot(report["rows"], list(report["summary"]), args.plot, report["dataset"])
        return report
    import torch

    from tasks.common import git_commit, write_json
    from tasks.params import load_params

    params = load_params()
    for assignment in args.set:
        set_dotted(params, assignment)
    variants = dict(parse_variant(v) for v in args.variant)
    strategies = {**STRATEGIES, **variants}
    names = args.strategies.split(",") + list(variants)
    check_variants(variants, params["train"])
    unknown = [n for n in names if n not in strategies]
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}: use {list(STRATEGIES)} or define them with --variant")
    events, catalogue, name = load_data(args)
    first, last = events["event_ts"].min().date(), events["event_ts"].max().date()
    if args.end is not None and not first < args.end <= last:
        raise SystemExit(f"--end {args.end}: the window must end after {first} and by {last} (the data's span)")
    features = features_for(args, catalogue, name) if params["train"].get("text_init", True) else {}
    days = window_days(events, args.days, args.window, args.end)
    device = device_name()
    head = {
        "command": "python bench/replay.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"device": device, "threads": torch.get_num_threads(), "torch": torch.__version__},
        "git_commit": git_commit(),
        "dataset": name,
        "days": [str(d) for d in days],
        "train_params": params["train"],
        "strategies": {k: {"mode": strategies[k][0], "overrides": strategies[k][1]} for k in names},
    }

    def save_partial(rows: list[dict], warmup: dict) -> None:
        # a multi-hour run that dies keeps every finished day: the report so far, marked incomplete
        write_json(args.out, {**head, **summarize(rows, names, warmup), "complete": False})

    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="freshrec-replay-") as tmp:
            rows, warmup = replay(events, catalogue, features, days, names, strategies, params, Path(tmp), save_partial,
                                  warm_from=args.warm)  # fmt: skip
    else:
        done = earlier_run(args.out, head)
        rows, warmup = replay(events, catalogue, features, days, names, strategies, params, args.work, save_partial,
                              done, args.warm)  # fmt: skip
    report = {**head, **summarize(rows, names, warmup), "complete": True}
    print_table(report)
    write_json(args.out, report)
    if args.plot:
        plot(rows, names, args.plot, name)
    return report


def _mean(rs: list[dict], key: str, weight: str | None = None) -> float | None:
    """Mean (or `weight`-weighted mean) of `key` over rows; None if a row lacks it (a recovered run)."""
    if not rs or any(key not in r or (weight and weight not in r) for r in rs):
        return None
    if weight is None:
        return round(statistics.mean(r[key] for r in rs), 5)
    return round(sum(r[key] * r[weight] for r in rs) / max(1, sum(r[weight] for r in rs)), 5)


def _per_trained_day(rs: list[dict], key: str, digits: int) -> float:
    """Mean of `key` over the days a strategy trained: the last day trains nothing (nothing is ranked
    after it); a strategy that never trains (stale) averages its zeros."""
    trained = [r for r in rs if r["train_passes"]] or rs
    return round(statistics.mean(r[key] for r in trained), digits)


def _ratio(pairs: list[tuple[dict, dict]], key: str) -> float | None:
    """sum of a strategy's `key` / full's, over (strategy row, full row) pairs of the same days."""
    den = sum(f[key] for _, f in pairs)
    return round(sum(r[key] for r, _ in pairs) / den, 4) if den else None


def summarize(rows: list[dict], names: list[str], warmup: dict) -> dict:
    """Per-strategy means over the days ranked so far, each vs full, and the stale decline."""
    if not rows:  # the warm-up alone, kept so a run stopped on its first day does not train it again
        return {"days_done": [], "warmup": warmup, "summary": {}, "stale_decline": None, "rows": []}
    days_done = list(dict.fromkeys(r["day"] for r in rows))
    summary = {}
    for strategy in names:
        rs = [r for r in rows if r["strategy"] == strategy]
        new = [r for r in rs if r.get("new_items_n")]
        has_new = all("new_items_n" in r for r in rs)  # recovered rows lack the new-item slice

        def new_slice(key: str, new=new, has_new=has_new) -> float | None:
            return (_mean(new, key, "new_items_n") if new else 0.0) if has_new else None

        summary[strategy] = {
            "days": len(rs),
            "mean_ndcg@10": _mean(rs, "ndcg@10"),
            "mean_hr@10": _mean(rs, "hr@10"),
            "event_weighted_ndcg@10": _mean(rs, "ndcg@10", "events"),
            "new_items_events": sum(r["new_items_n"] for r in new) if has_new else None,
            "new_items_ndcg@10": new_slice("new_items_ndcg@10"),
            "new_items_hr@10": new_slice("new_items_hr@10"),
            "window_excluded_ndcg@10": _mean(rs, "window_excluded_ndcg@10"),  # None for rows that predate it
            "window_excluded_hr@10": _mean(rs, "window_excluded_hr@10"),
            "train_seconds_per_day": _per_trained_day(rs, "train_seconds", 3),
            "train_passes_per_day": _per_trained_day(rs, "train_passes", 1),
        }
    full = {r["day"]: r for r in rows if r["strategy"] == "full"}
    for strategy, s in summary.items():
        if full:  # on the days both were measured (pooled runs may cover different days)
            rs = [r for r in rows if r["strategy"] == strategy and r["day"] in full]
            fs = [full[r["day"]] for r in rs]
            trained = [(r, f) for r, f in zip(rs, fs, strict=True) if f["train_passes"]]
            s["ndcg_vs_full"] = round(sum(r["ndcg@10"] for r in rs) / sum(f["ndcg@10"] for f in fs) - 1, 4)
            s["ndcg_vs_full_ci90"] = vs_full_ci(rows, strategy)
            s["compute_vs_full"] = _ratio(trained, "train_passes")
            s["seconds_vs_full"] = _ratio(trained, "train_seconds")
    if DEFAULT in names:  # today's default recipe, the bar a cheaper one is held to (as ranked and as served)
        base = {r["day"]: r for r in rows if r["strategy"] == DEFAULT}
        for strategy, s in summary.items():
            rs = [r for r in rows if r["strategy"] == strategy and r["day"] in base]
            trained = [(r, base[r["day"]]) for r in rs if base[r["day"]]["train_passes"]]
            for key in COMPARED:
                if rs and all(key in r and key in base[r["day"]] for r in rs):
                    a, b = [r[key] for r in rs], [base[r["day"]][key] for r in rs]
                    s[f"{key}_vs_default"] = round(sum(a) / sum(b) - 1, 4) if sum(b) else None
                    s[f"{key}_vs_default_ci90"] = paired_ci(a, b) if sum(b) else None
            s["seconds_vs_default"] = _ratio(trained, "train_seconds")
            s["passes_vs_default"] = _ratio(trained, "train_passes")
    decline = stale_decline(rows, days_done) if {"stale", "full"} <= set(names) else None
    return {"days_done": days_done, "warmup": warmup, "summary": summary, "stale_decline": decline, "rows": rows}


def _decimals(x: float) -> int:
    text = repr(x)
    return len(text.partition(".")[2]) if "e" not in text else 17


def combine(paths: list[Path], tolerance: float = 0.0) -> dict:
    """One report from several runs over the same data and model recipe (one window split across
    sessions, or extra strategies run later): rows are pooled by (day, strategy), and a row that
    two runs both measured must agree to the coarser one's precision (plus `tolerance`, for runs
    on different CPUs, whose kernels round differently) — the proof that they share the warm-up
    and the code — else the runs are refused, not mixed. Of two agreeing rows the first listed
    is kept, unless a later one has more fields (HR@10, the new-item slice); either way the pooled row
    keeps the training of the one that trained, whichever was listed first."""
    from tasks.common import read_json

    reports = [read_json(p) for p in paths]
    datasets = {r["dataset"] for r in reports}
    if len(datasets) != 1:
        raise SystemExit(f"--combine: the runs replay different datasets {sorted(datasets)}")
    rows: dict[tuple[str, str], dict] = {}
    source: dict[tuple[str, str], dict] = {}  # the report each pooled row came from
    max_diff = 0.0
    for path, report in zip(paths, reports, strict=True):
        for row in report["rows"]:
            key = (row["day"], row["strategy"])
            if key in rows:
                a, b = rows[key]["ndcg@10"], row["ndcg@10"]
                slack = 0.5 * 10 ** -min(_decimals(a), _decimals(b))  # the coarser row was rounded
                max_diff = max(max_diff, abs(a - b))
                if abs(a - b) > slack + tolerance + 1e-12:
                    raise SystemExit(
                        f"--combine: {path} measured {key[1]} on {key[0]} at NDCG@10 {b}, an earlier run {a}: "
                        f"the runs do not share the warm-up and code (tolerance {tolerance}), so their rows "
                        "cannot be pooled"
                    )
                if len(row) > len(rows[key]):  # keep the row with more fields (HR, new items)
                    rows[key], source[key] = {**row, **({} if row["train_passes"] else _training(rows[key]))}, report
                elif not rows[key]["train_passes"]:  # e.g. a one-day window listed before the run that trained
                    rows[key] = {**rows[key], **_training(row)}
            else:
                rows[key], source[key] = row, report
    for report in reports:
        fill_from_warmup(rows, source, report)
    pooled = sorted(rows.values(), key=lambda r: r["day"])
    seen = list(dict.fromkeys(name for r in reports for name in r["summary"]))  # reports sort their keys
    names = [n for n in STRATEGIES if n in seen] + [n for n in seen if n not in STRATEGIES]
    first = min(reports, key=lambda r: r["days"][0])
    head = {
        "command": "python bench/replay.py --combine " + " ".join(str(p) for p in paths),
        "dataset": datasets.pop(),
        "days": sorted({d for r in reports for d in r["days"]}),
        "tolerance": tolerance,
        "max_shared_row_diff": round(max_diff, 6),
        "sources": [
            {k: r.get(k) for k in ("command", "git_commit", "machine", "days", "days_done", "complete")}
            for r in reports
        ],
    }
    summary = summarize(pooled, names, first["warmup"])
    # complete: every strategy measured on every day of the pooled window, whichever run measured it
    # (each source's own flag stays in `sources`: runs split across sessions are each partial)
    measured = {(r["day"], r["strategy"]) for r in pooled}
    complete = all((day, name) in measured for day in head["days"] for name in names)
    return {**head, **summary, "complete": complete}


def _training(row: dict) -> dict:
    """A row's training fields, if it trained: a one-day window ranked from a saved model (`--warm`)
    trains nothing, and the run that trained that day's model measured the same row with its training."""
    return {k: row[k] for k in ("train_seconds", "train_passes", "threads") if k in row} if row["train_passes"] else {}


def fill_from_warmup(rows: dict, source: dict, report: dict) -> None:
    """A run's warm-up is a full retrain through the day before its window. When a window is split into
    runs (a daily full retrain on ML-1M is 20-60 minutes a day: two runs side by side, or a run continued
    on another machine), the earlier run's last day trains nothing, and the training the daily full
    retrain did after that day is the later run's warm-up: it is set into that `full` row, if the two
    runs share the full recipe (train_params less the incremental one)."""
    warm = report.get("warmup") or {}
    key = (warm.get("through"), "full")
    if key not in rows or rows[key]["train_passes"] or not warm.get("passes"):
        return

    def recipe(r: dict) -> dict:
        return {k: v for k, v in r.get("train_params", {}).items() if k != "incremental"}

    if recipe(source[key]) != recipe(report):
        return
    threads = {"threads": report["machine"]["threads"]} if "machine" in report else {}
    rows[key] = {**rows[key], "train_seconds": warm["seconds"], "train_passes": warm["passes"], **threads}


def _changed(a, b, prefix: str = "") -> dict:
    """The dotted keys whose values differ between two nested dicts: {key: [a's, b's]}."""
    out = {}
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out |= _changed(x, y, f"{prefix}{key}.")
        elif x != y:
            out[prefix + key] = [x, y]
    return out


def compare(base_path: Path, new_path: Path) -> dict:
    """Two complete runs over the same data and days, paired by day: for a change that needs its own
    warm-up (a model change such as `--set train.block=ligr`), which `--variant` cannot share. Per
    strategy both ran, the new run's mean next-day NDCG@10 (as ranked, and as served with the window
    excluded) over the base run's, with a 90 % interval from a paired bootstrap over the days and the
    count of days the new run is ahead. Training seconds come from two runs, so their ratio is only
    indicative; `changed` lists the params that differ (what the comparison is about)."""
    from tasks.common import read_json

    base, new = read_json(base_path), read_json(new_path)
    for path, report in ((base_path, base), (new_path, new)):
        if not report.get("complete"):
            raise SystemExit(f"--compare: {path} is an incomplete run (complete: false); finish it or rerun it first")
    if (base["dataset"], base["days"]) != (new["dataset"], new["days"]):
        raise SystemExit(
            f"--compare: the runs replay different windows ({base['dataset']} {base['days'][0]}..{base['days'][-1]}, "
            f"{new['dataset']} {new['days'][0]}..{new['days'][-1]}); rerun one with the other's --dataset/--days/--end"
        )
    ran = [list(dict.fromkeys(r["strategy"] for r in rep["rows"])) for rep in (base, new)]
    shared = [s for s in ran[0] if s in ran[1]]
    if not shared:
        raise SystemExit(f"--compare: no strategy ran in both ({ran[0]} vs {ran[1]})")
    strategies = {}
    for strategy in shared:
        by = [{r["day"]: r for r in rep["rows"] if r["strategy"] == strategy} for rep in (base, new)]
        days = sorted(set(by[0]) & set(by[1]))
        out = {"days": len(days)}
        for key in COMPARED:
            if not all(key in by[i][d] for i in (0, 1) for d in days):
                continue  # a run from before the window-excluded figure
            b, a = ([by[i][d][key] for d in days] for i in (0, 1))
            if not sum(b):
                raise SystemExit(f"--compare: {base_path} ranks no event of {strategy} in the top 10 ({key} 0 on "
                                 "every day), so there is no ratio to take; replay a longer window")  # fmt: skip
            out[key] = {
                "base": round(statistics.mean(b), 5),
                "new": round(statistics.mean(a), 5),
                "new_vs_base": round(sum(a) / sum(b) - 1, 4),
                "ci90": paired_ci(a, b),
                "days_new_ahead": sum(x > y for x, y in zip(a, b, strict=True)),
            }
        secs = [_per_trained_day(list(rows.values()), "train_seconds", 3) for rows in by]
        out["train_seconds_per_day"] = {"base": secs[0], "new": secs[1]}
        strategies[strategy] = out
    return {
        "command": f"python bench/replay.py --compare {base_path} {new_path}",
        "dataset": base["dataset"],
        "days": base["days"],
        "base": {k: base.get(k) for k in ("command", "git_commit", "machine", "warmup")},
        "new": {k: new.get(k) for k in ("command", "git_commit", "machine", "warmup")},
        "changed": _changed(base.get("train_params", {}), new.get("train_params", {})),
        "strategies": strategies,
    }


def print_comparison(report: dict) -> None:
    changed = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in report["changed"].items()) or "no params"
    print(f"{report['dataset']}, {len(report['days'])} days; changed: {changed}")
    print(f"{'strategy':<27} {'ranking':<17} {'base':>7} {'new':>7} {'new vs base [90% CI]':>26} {'days ahead':>10}")
    for strategy, s in report["strategies"].items():
        for key in COMPARED:
            if key not in s:
                continue
            m = s[key]
            lo, hi = m["ci90"]
            label = "as ranked" if key == "ndcg@10" else "window excluded"
            vs = f"{m['new_vs_base']:+.1%} [{lo:+.1%}, {hi:+.1%}]"
            print(f"{strategy:<27} {label:<17} {m['base']:>7.4f} {m['new']:>7.4f} {vs:>26} "
                  f"{m['days_new_ahead']:>5}/{s['days']:<4}")  # fmt: skip


def print_table(report: dict) -> None:
    summary, decline = report["summary"], report["stale_decline"]
    full = "full" in summary
    print(f"{'strategy':<27} {'days':>4} {'NDCG@10':>8} {'HR@10':>7} {'vs full [90% CI]':>23} {'new-item HR':>11} "
          f"{'s/day':>7} {'passes/day':>10} {'compute':>8} {'window excl. NDCG/HR':>20}")  # fmt: skip
    for strategy, s in summary.items():
        lo, hi = s.get("ndcg_vs_full_ci90") or (0, 0)
        vs = f"{s['ndcg_vs_full']:+.1%} [{lo:+.1%}, {hi:+.1%}]" if full else "—"
        comp = f"{s['compute_vs_full']:.1%}" if full and s["compute_vs_full"] is not None else "—"
        hr, new_hr, w_ndcg, w_hr = (
            f"{v:.4f}" if v is not None else "—"
            for v in (
                s["mean_hr@10"],
                s["new_items_hr@10"],
                s["window_excluded_ndcg@10"],
                s["window_excluded_hr@10"],
            )
        )
        print(f"{strategy:<27} {s['days']:>4} {s['mean_ndcg@10']:>8.4f} {hr:>7} {vs:>23} "
              f"{new_hr:>11} {s['train_seconds_per_day']:>7.2f} "
              f"{s['train_passes_per_day']:>10.0f} {comp:>8} {w_ndcg + ' / ' + w_hr:>20}")  # fmt: skip
    if any("seconds_vs_default" in s for s in summary.values()):
        print(f"\nagainst {DEFAULT} (paired by day; 90 % CI from a bootstrap over days)")
        print(f"{'strategy':<27} {'as ranked':>24} {'as served':>24} {'train s':>8} {'passes':>7}")
        for strategy, s in summary.items():
            cells = []
            for key in COMPARED:
                v, ci = s.get(f"{key}_vs_default"), s.get(f"{key}_vs_default_ci90")
                cells.append(f"{v:+.1%} [{ci[0]:+.1%}, {ci[1]:+.1%}]" if v is not None and ci else "—")
            secs, passes = s.get("seconds_vs_default"), s.get("passes_vs_default")
            print(f"{strategy:<27} {cells[0]:>24} {cells[1]:>24} {secs if secs is None else f'{secs:.1%}':>8} "
                  f"{passes if passes is None else f'{passes:.1%}':>7}")  # fmt: skip
    if decline:
        print(f"stale - full NDCG@10: first third {decline['gap_first_third']:+.4f}, last third "
              f"{decline['gap_last_third']:+.4f}, slope {decline['gap_slope_per_day']:+.5f}/day")  # fmt: skip


def plot(rows: list[dict], names: list[str], path: Path, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for strategy in names:
        rs = [r for r in rows if r["strategy"] == strategy]
        x, y = [r["day"] for r in rs], [r["ndcg@10"] for r in rs]
        style = {"linewidth": 2.2} if strategy in ("stale", "full", "incremental_all_replay") else {"alpha": 0.6}
        top.plot(x, y, marker=".", label=strategy, **style)
        cum = [sum(y[: i + 1]) / (i + 1) for i in range(len(y))]
        bottom.plot(x, cum, label=strategy, **style)
    top.set_ylabel("next-day NDCG@10")
    top.set_title(f"{dataset}: prequential daily replay (full ranking)")
    bottom.set_ylabel("running mean NDCG@10")
    bottom.tick_params(axis="x", rotation=45)
    days = [r["day"] for r in rows if r["strategy"] == names[0]]
    bottom.set_xticks(days[:: max(1, len(days) // 10)])
    top.legend(fontsize=7, ncol=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
