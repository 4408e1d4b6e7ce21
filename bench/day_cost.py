"""What one day costs, per task, on MovieLens-1M: is the cost the day's, or the history's?

Scenarios, each a real deployment on this machine (SeaweedFS S3 on loopback, the registry, the data plane:
every task in its own workspace over one worker's blob cache, as the DAG runs them, `auto_approve`):
- `surge`: ML-1M as it is; the bootstrap's champion is trained through the day before `--day` (about 200
  days of history in autumn 2000), then `--days` real days run from `--day` on;
- `restamp`: the same days' events, after the same history re-stamped onto `--history-days` days (event
  order kept, about 1,000 days): as many events before the day, five times as many days.
A day's steps run in order, each timed (`pull_champion` includes building the day's history unit, train
includes DVC versioning); the ratio restamp/surge per day is the cost the history's length adds.

`--volume 1000000 10000000`: validation, drift and the history update (the next day's unit, and the unit
that compacts the day's month) of one day of that many events (ML-1M's user-days drawn at random, each draw
under a user id of its own so no event repeats an earlier one: ML-1M's per-user volumes, about n / 44 users;
re-stamped onto the day after the surge scenario's last), each in a child process, with its peak resident
memory.

The champion is trained for `--champion-epochs` (1) instead of 30: a day's cost does not depend on how
good its champion is, and the day's mode is forced to `incremental` (a 1-epoch champion may look drifted).

    python bench/day_cost.py --out bench/results/day_cost_ml1m.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ML1M_START = "2000-04-25"


def scenario_params(work: Path, source_path: Path | None, warmup_end: dt.date, epochs: int, recipe: dict) -> Path:
    from tasks.params import load_params

    params = load_params(ROOT / "params.yaml")
    params["source"].update(dataset="path" if source_path else "ml-1m", path=str(source_path) if source_path else None,
                            warmup_end=str(warmup_end), landing_dir=str(work / "landing"))  # fmt: skip
    params["train"]["full"]["epochs"] = epochs
    params["train"]["incremental"].update(recipe)
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def restamped_source(work: Path, first_day: dt.date, history_days: int) -> tuple[Path, dt.date]:
    """ML-1M with the events before `first_day` spread evenly (in order) over `history_days` days, and the
    events from `first_day` on moved to follow them. Returns (the .inter file, the new first day)."""
    import pandas as pd

    from tasks.sources import load_dataset, packaged_path

    events = load_dataset("ml-1m").events
    cut = pd.Timestamp(first_day, tz="UTC")
    before = events["event_ts"] < cut
    start = pd.Timestamp(first_day, tz="UTC") - pd.Timedelta(days=history_days)
    n = int(before.sum())
    day_of = (pd.Series(range(n)) * history_days // n).to_numpy()
    ts = events["event_ts"].copy()
    second = (events.loc[before, "event_ts"] - events.loc[before, "event_ts"].dt.floor("D")).to_numpy()
    ts.loc[before] = start + pd.to_timedelta(day_of, unit="D") + second
    out = work / "ml-1m-restamped.inter"
    stamps = ts.dt.as_unit("s").astype("int64")
    columns = {"user_id:token": events["user_id"], "item_id:token": events["item_id"], "rating:float": events["rating"]}
    frame = pd.DataFrame(columns | {"timestamp:float": stamps})
    frame.to_csv(out, sep="\t", index=False)
    shutil.copy(packaged_path("ml-1m").with_suffix(".item"), out.with_suffix(".item"))
    return out, first_day  # the days from first_day keep their dates: the history before them is longer


def run_scenario(name: str, work: Path, params_file: Path, days: list[dt.date]) -> dict:
    """Bootstrap through the day before `days[0]`, then run each day's steps, timed."""
    import pyarrow.parquet as pq

    from tasks.bootstrap import bootstrap
    from tasks.common import Layout
    from tasks.day import pull_champion, run_step, snapshot_params, task_scope
    from tasks.landing import EVENTS_FILE
    from tasks.params import load_params
    from tasks.pipeline import SEQUENCE, DayOptions, run_day_step, summarize_day
    from tasks.registry import registry_from_env
    from tasks.replay import run as land
    from tasks.store import Store

    os.environ["FRESHREC_PARAMS"] = str(params_file)
    os.environ["FRESHREC_DATA"] = str(work / "data")
    params = load_params(params_file)
    t0 = time.perf_counter()
    boot = bootstrap(params, Layout(work / "bootstrap"), progress=False, store=Store.from_env(params))
    setup = time.perf_counter() - t0
    print(f"{name}: bootstrapped through {params['source']['warmup_end']} in {setup:.0f} s ({boot['version']})",
          flush=True)  # fmt: skip
    registry = registry_from_env(params)
    options = DayOptions(approver="bench", reason="day cost", force_mode="incremental", progress=False)
    out = []
    for day in days:
        land(day, params)
        snapshot_params(day, params, Layout(work / "first"), Store.from_env(params))
        times = {}
        for step in SEQUENCE:
            t0 = time.perf_counter()
            with task_scope(step, day, params, work / "data") as (layout, store):
                if step == "pull_champion":
                    pull_champion(day, params, layout, store, registry)
                elif step == "summarize_run":
                    states = dict.fromkeys(SEQUENCE, "success")
                    run_step(step, day, params, layout, summarize_day, day, params, layout, states, None, None, None,
                             dt.timedelta(hours=1), store=store)  # fmt: skip
                else:
                    run_day_step(step, day, params, layout, store, options)
                    if step == "ingest_events":
                        events = pq.ParquetFile(layout.raw(day) / EVENTS_FILE).metadata.num_rows
            times[step] = round(time.perf_counter() - t0, 3)
        total = round(sum(times.values()), 3)
        print(f"{name} {day}: {total:.1f} s " + " ".join(f"{k}={v:.1f}" for k, v in times.items()), flush=True)
        out.append({"day": str(day), "events": events, "seconds": times, "total": total})
    return {"setup_seconds": round(setup, 1), "warmup_end": params["source"]["warmup_end"], "days": out}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def volume_child(data: Path, params_file: Path, day: dt.date, n: int, step: str, start: str = "fresh") -> dict:
    """In a child process: one step on a day of `n` events; seconds and peak resident memory. `start`:
    `fresh`, a new interpreter that imports what the step needs as it goes (a task without a preloaded
    parent, or a step's command line); `preloaded`, with tasks.preload imported before the clock starts,
    as an Airflow task forked from a worker that preloaded (tasks/preload.py)."""
    if start == "preloaded":
        import tasks.preload  # noqa: F401
    from tasks import drift, validate
    from tasks.common import Layout
    from tasks.history import build_history
    from tasks.params import load_params

    params = load_params(params_file)
    layout = Layout(data)
    base = _peak_mb()
    t0 = time.perf_counter()
    if step == "validate":
        validate.run(day, params, layout)
    elif step == "drift":
        drift.run(day, params, layout, "incremental")
    elif step == "history":  # the next day's unit: the day's partition linked in
        build_history(layout, day + dt.timedelta(days=1))
    else:  # the first day of the next month's unit: the month compacted, the big day with it
        build_history(layout, (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1))
    return {"step": step, "events": n, "start": start, "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": round(_peak_mb(), 0), "rss_before_mb": round(base, 0)}  # fmt: skip


def volume_state(work: Path, params_file: Path, day: dt.date, n: int) -> Path:
    """A fresh worker's data root for a day of `n` events drawn from ML-1M (as user-days), landed and ingested,
    with what validation and drift read pulled from the scenario's store (the history unit built by
    pull_champion)."""
    import numpy as np
    import pandas as pd

    from tasks.common import Layout
    from tasks.day import ITEMS_BEFORE, QUARANTINE_ALL, RAW_SINCE_KEYS, RAW_TRAILING, pull, pull_champion
    from tasks.ingest import ingest_day
    from tasks.landing import EVENTS_FILE, ITEMS_FILE
    from tasks.params import load_params
    from tasks.registry import registry_from_env
    from tasks.replay import landing_path
    from tasks.sources import load_dataset
    from tasks.store import Store
    from tasks.units import DRIFT_BEFORE, EVENT_KEYS_BEFORE

    params = load_params(params_file)
    layout = Layout(work / f"volume-{n}")
    shutil.rmtree(layout.root, ignore_errors=True)
    ds = load_dataset("ml-1m")
    rng = np.random.default_rng(0)
    # ML-1M's user-days (a user's events of one date: 44 on average, median 7), drawn with replacement, each
    # draw a user of its own: real per-user volumes and baskets, no key repeated, n / 44 users in the day
    e = ds.events
    user_day = e.groupby([e["user_id"], e["event_ts"].dt.floor("D")], sort=False).ngroup().to_numpy()
    order = np.argsort(user_day, kind="stable")
    starts = np.searchsorted(user_day[order], np.arange(user_day.max() + 1))
    sizes = np.diff(np.append(starts, len(order)))
    draws = rng.integers(0, len(sizes), 2 * n // int(sizes.mean()) + 100)
    draws = draws[: np.searchsorted(np.cumsum(sizes[draws]), n) + 1]
    rows = np.concatenate([order[starts[d] : starts[d] + sizes[d]] for d in draws])[:n]
    events = e.iloc[rows].reset_index(drop=True)
    draw_of_row = np.repeat(np.arange(len(draws)), sizes[draws])[:n]
    events["user_id"] = events["user_id"] + "-" + pd.Series(draw_of_row).astype(str)
    second = rng.integers(0, 86400, n)
    events["event_ts"] = (pd.Timestamp(day, tz="UTC") + pd.to_timedelta(second, unit="s")).astype("datetime64[s, UTC]")
    events = events.drop_duplicates(["user_id", "item_id"]).sort_values(["event_ts", "user_id", "item_id"])
    landing = work / f"landing-{n}"
    shutil.rmtree(landing, ignore_errors=True)
    folder = landing_path(landing, day)
    folder.mkdir(parents=True)
    events.to_parquet(folder / EVENTS_FILE, index=False)
    ds.items.to_parquet(folder / ITEMS_FILE, index=False)
    ingest_day(day, landing, layout)
    store = Store.from_env(params)
    pull(store, layout, day, (RAW_TRAILING, RAW_SINCE_KEYS, ITEMS_BEFORE, QUARANTINE_ALL, EVENT_KEYS_BEFORE), params)
    pull_champion(day, params, layout, store, registry_from_env(params))
    pull(store, layout, day, (DRIFT_BEFORE,), params)  # drift's other reads: the history unit, the day, champion
    return layout.root


def volume_runs(
    work: Path, params_file: Path, day: dt.date, sizes: list[int], repeats: int = 1, starts: tuple = ("fresh",)
) -> list[dict]:
    """Each step at each size, `repeats` times in child processes of each start (`volume_child`; the starts
    take turns within a repeat), a re-run of a step being a real re-run (the same inputs, its outputs
    replaced); the row's seconds are the median, every run's are kept."""
    rows = []
    for n in sizes:
        data = volume_state(work, params_file, day, n)
        for step in ("validate", "drift", "history", "compaction"):
            runs: dict[str, list] = {start: [] for start in starts}
            for _, start in itertools.product(range(repeats), starts):
                if not (runs[start] and "error" in runs[start][0]):  # a start that failed once is not retried
                    run = _volume_run(data, params_file, day, n, step, start)
                    runs[start] = [run] if "error" in run else [*runs[start], run]
            for done in runs.values():
                rows.append(done[0] if "error" in done[0] else {
                    **done[0], "seconds": round(statistics.median(r["seconds"] for r in done), 2),
                    "runs_seconds": [r["seconds"] for r in done], "peak_rss_mb": max(r["peak_rss_mb"] for r in done),
                })  # fmt: skip
        shutil.rmtree(data, ignore_errors=True)
    return rows


def _volume_run(data: Path, params_file: Path, day: dt.date, n: int, step: str, start: str) -> dict:
    """One run of `volume_child` in a child process: its report, or the error it ended with."""
    res = subprocess.run(
        [sys.executable, __file__, "--child", step, "--data", str(data), "--params-file", str(params_file),
         "--day", str(day), "--n", str(n), "--start", start],
        capture_output=True, text=True, check=False, cwd=ROOT, env=os.environ | {"FRESHREC_DATA": str(data)},
    )  # fmt: skip
    if res.returncode != 0:
        print(f"volume {n:,} {step} ({start}): FAILED {res.stderr[-400:]}", flush=True)
        return {"step": step, "events": n, "start": start, "error": res.stderr[-1500:]}
    run = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"volume {n:,} {step} ({start}): {run['seconds']} s, peak {run['peak_rss_mb']:.0f} MB", flush=True)
    return run


@contextlib.contextmanager
def s3_server(state: Path):
    from tasks.s3 import LocalS3

    server = LocalS3(state, int(os.environ.get("FRESHREC_BENCH_S3_PORT", "8433"))).start()
    saved = dict(os.environ)
    os.environ.update(server.env())
    try:
        yield server
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2000, 11, 20))
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--history-days", type=int, default=1000)
    ap.add_argument("--scenarios", default="surge,restamp")
    ap.add_argument("--volume", type=int, nargs="*", default=[1_000_000, 10_000_000])
    ap.add_argument("--champion-epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each volume step (the median is reported)")
    ap.add_argument("--starts", nargs="+", choices=["fresh", "preloaded"], default=["preloaded", "fresh"],
                    help="how each volume step's process starts: a fresh interpreter, or with the model "
                         "stack preloaded as a worker's task processes have it (tasks/preload.py)")  # fmt: skip
    ap.add_argument("--volume-only", action="store_true",
                    help="only the volume runs, on the surge deployment an earlier run left in --work")  # fmt: skip
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a train.incremental key for the days (replay=all: the whole-history recipe)")  # fmt: skip
    ap.add_argument("--work", type=Path, help="keep the deployments here (default: a temporary folder)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", choices=["validate", "drift", "history", "compaction"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--params-file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--start", choices=["fresh", "preloaded"], default="fresh", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(volume_child(args.data, args.params_file, args.day, args.n, args.child, args.start)))
        return None
    if args.out is None:
        ap.error("--out is required")
    from tasks.common import git_commit, write_json

    recipe = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    work = args.work or Path(tempfile.mkdtemp(prefix="freshrec-daycost-"))
    days = [args.day + dt.timedelta(days=i) for i in range(args.days)]
    warm = args.day - dt.timedelta(days=1)
    os.environ.update(FRESHREC_START_DATE="1997-01-01", FRESHREC_END_DATE="")
    report: dict = {
        "command": "python bench/day_cost.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_commit": git_commit(),
        "machine": f"{os.cpu_count()} cores",
        "champion_epochs": args.champion_epochs,
        "incremental_overrides": recipe,
        "scenarios": {},
    }
    if args.volume_only:
        folder = work / "surge"
        if args.work is None or not (folder / "params.yaml").exists() or not (work / "s3").is_dir():
            ap.error("--volume-only needs --work holding an earlier run's surge deployment (surge/ and s3/)")
        os.environ.update(FRESHREC_LANDING_DIR=str(folder / "landing"), FRESHREC_BUCKET="daycost-surge")
        with s3_server(work / "s3"):
            report["volume"] = volume_runs(folder, folder / "params.yaml", days[-1] + dt.timedelta(days=1),
                                           args.volume, args.repeats, tuple(dict.fromkeys(args.starts)))  # fmt: skip
        write_json(args.out, report)
        print_table(report)
        return report
    try:
        shutil.rmtree(work / "s3", ignore_errors=True)
        with s3_server(work / "s3"):  # one server; a bucket per scenario
            for name in args.scenarios.split(","):
                folder = work / name
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                source = restamped_source(folder, args.day, args.history_days)[0] if name == "restamp" else None
                params_file = scenario_params(folder, source, warm, args.champion_epochs, recipe)
                os.environ.update(FRESHREC_LANDING_DIR=str(folder / "landing"), FRESHREC_BUCKET=f"daycost-{name}")
                report["scenarios"][name] = run_scenario(name, folder, params_file, days)
                write_json(args.out, report)
                if name == "surge" and args.volume:  # the day after the last, at each volume
                    vday = days[-1] + dt.timedelta(days=1)
                    report["volume"] = volume_runs(folder, params_file, vday, args.volume, args.repeats,
                                                   tuple(dict.fromkeys(args.starts)))  # fmt: skip
                    write_json(args.out, report)
        report["summary"] = summarize(report)
        write_json(args.out, report)
        print_table(report)
        return report
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def summarize(report: dict) -> dict:
    from tasks.pipeline import SEQUENCE

    scen = report["scenarios"]
    out = {}
    for name, s in scen.items():
        steps = [k for k in SEQUENCE if s["days"] and k in s["days"][0]["seconds"]]
        out[name] = {
            "median_total": statistics.median(d["total"] for d in s["days"]),
            "median_by_step": {k: round(statistics.median(d["seconds"][k] for d in s["days"]), 2) for k in steps},
        }
    if {"surge", "restamp"} <= set(scen):
        ratios = [b["total"] / a["total"] for a, b in zip(scen["surge"]["days"], scen["restamp"]["days"], strict=True)]
        out["restamp_over_surge"] = {
            "per_day": [round(r, 3) for r in ratios],
            "median": round(statistics.median(ratios), 3),
        }
    return out


def print_table(report: dict) -> None:
    from tasks.pipeline import SEQUENCE

    scen = report["scenarios"]
    names = list(scen)
    if names:
        days = scen[names[0]]["days"]
        steps = [s for s in SEQUENCE if s in days[0]["seconds"]]
        head = f"{'step':<20}" + "".join(f" {n + ' ' + d['day'][5:]:>15}" for n in names for d in scen[n]["days"])
        print(head + "\n" + "-" * len(head))
        for step in [*steps, "total"]:
            cells = [d["total"] if step == "total" else d["seconds"][step] for n in names for d in scen[n]["days"]]
            print(f"{step:<20}" + "".join(f" {c:>15.2f}" for c in cells))
    if "restamp_over_surge" in report.get("summary", {}):
        r = report["summary"]["restamp_over_surge"]
        print(f"restamp / surge, per day: {r['per_day']} (median {r['median']})")
    for row in report.get("volume", []):
        if "error" in row:
            print(f"{row['events']:>11,} events {row['step']:<10} {row.get('start', 'fresh'):<9} FAILED")
        else:
            secs, peak, runs = row["seconds"], row["peak_rss_mb"], row.get("runs_seconds", [])
            print(f"{row['events']:>11,} events {row['step']:<10} {row.get('start', 'fresh'):<9} {secs:>8.2f} s  "
                  f"peak {peak:>7.0f} MB  runs {runs}")  # fmt: skip


if __name__ == "__main__":
    main()
