"""Time per stage of one daily run: today's local disk vs the object-store data plane, in one run.

Three ways to run day D's steps (ingest -> validate -> pull champion -> drift -> train -> evaluate ->
export -> benchmark), alternated `--repeats` times on the same day:
- `local`: every step reads and writes one prepared local data dir (the pre-issue-12 way; no store);
- `store, warm`: through `tasks.day.run_step` on one worker whose cache survives between steps;
- `store, cold`: through `run_step`, every step on a fresh empty disk (each task on a new worker).
DVC versioning of training is timed on its own (`dvc record`), as the third variant pays it too.
Reads the state `make run` leaves (S3 credentials from .run/demo/s3, its params and data), and lands
the day after `make run`'s last one. Prints a table of medians and ratios and writes JSON.

    python bench/dataplane.py --day 1998-03-04 --repeats 3 --out bench/results/dataplane_ml100k.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STAGES = [
    "ingest_events",
    "validate_events",
    "pull_champion",
    "detect_drift",
    "train_challenger",
    "evaluate_challenger",
    "export_onnx",
    "benchmark_latency",
]


def _functions(day, params):
    from tasks import benchmark, drift, evaluate, export, ingest, train, validate

    return {
        "ingest_events": lambda lay: ingest.run(day, params, lay),
        "validate_events": lambda lay: validate.run(day, params, lay),
        "detect_drift": lambda lay: drift.run(day, params, lay),
        "train_challenger": lambda lay: train.run(day, params, lay, progress=False),
        "evaluate_challenger": lambda lay: evaluate.run(day, params, lay),
        "export_onnx": lambda lay: export.run(day, params, lay),
        "benchmark_latency": lambda lay: benchmark.run(day, params, lay),
    }


def run_local(day, params, source: Path, registry) -> dict[str, float]:
    from tasks.common import Layout
    from tasks.day import CHAMPION_FILES, resolve_base
    from tasks.store import Store

    scratch = Path(tempfile.mkdtemp(prefix="bench-local-"))
    try:
        shutil.copytree(source, scratch / "data", ignore=shutil.ignore_patterns(f"date={day}"))
        layout = Layout(scratch / "data")
        fns, times = _functions(day, params), {}
        for stage in STAGES:
            t0 = time.perf_counter()
            if stage == "pull_champion":  # the old step: download the champion, nothing else
                version, _ = resolve_base(day, Store.from_env(params), Layout(scratch / "resolve"), registry)
                registry.download(version, layout.run(day) / "champion", CHAMPION_FILES)
            else:
                fns[stage](layout)
            times[stage] = time.perf_counter() - t0
        return times
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_store(day, params, registry, cold: bool) -> dict[str, float]:
    from tasks.common import Layout
    from tasks.day import pull_champion, run_step
    from tasks.store import Store
    from tasks.versioning import version_training

    scratch = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        store, fns, times = Store.from_env(params), _functions(day, params), {}
        for i, stage in enumerate(STAGES):
            layout = Layout(scratch / (f"worker-{i}" if cold else "worker") / "data")
            t0 = time.perf_counter()
            if stage == "pull_champion":
                pull_champion(day, params, layout, store, registry)
            else:
                run_step(stage, day, params, layout, fns[stage], layout, store=store)
            times[stage] = time.perf_counter() - t0
            if stage == "train_challenger" and cold:
                t0 = time.perf_counter()
                version_training(day, params, layout)
                times["dvc record"] = time.perf_counter() - t0
        return times
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--day", default="1998-03-04")
    ap.add_argument("--demo", type=Path, default=ROOT / ".run" / "demo")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from tasks.common import git_commit, parse_day
    from tasks.params import load_params
    from tasks.replay import run as replay
    from tasks.s3 import LocalS3

    server = LocalS3(args.demo / "s3", int(os.environ.get("FRESHREC_DEMO_S3_PORT", "8333"))).start()
    os.environ.update(server.env())
    os.environ["FRESHREC_PARAMS"] = str(args.demo / "params.yaml")
    try:
        from tasks.registry import registry_from_env

        params = load_params(args.demo / "params.yaml")
        day = parse_day(args.day)
        registry = registry_from_env(params)
        replay(day, params)
        runs: dict[str, list[dict]] = {"local": [], "store, warm": [], "store, cold": []}
        for r in range(args.repeats):
            runs["local"].append(run_local(day, params, args.demo / "data", registry))
            runs["store, warm"].append(run_store(day, params, registry, cold=False))
            runs["store, cold"].append(run_store(day, params, registry, cold=True))
            print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr)
    finally:
        server.stop()
    rows = []
    for stage in [*STAGES, "dvc record", "total"]:
        row = {"stage": stage}
        for name, reps in runs.items():
            vals = [sum(t.get(s, 0) for s in STAGES) if stage == "total" else t.get(stage) for t in reps]
            row[name] = statistics.median(vals) if all(v is not None for v in vals) else None
        # ratios within each repeat, then their median: the machine is shared and noisy
        for name in ("store, warm", "store, cold"):
            ratios = [
                (sum(b.get(s, 0) for s in STAGES) / sum(a.values()))
                if stage == "total"
                else (b[stage] / a[stage] if stage in a and stage in b else None)
                for a, b in zip(runs["local"], runs[name], strict=True)
            ]
            row[f"{name} / local"] = statistics.median(ratios) if all(x is not None for x in ratios) else None
        rows.append(row)
    fmt = lambda v, spec: "—" if v is None else format(v, spec)  # noqa: E731
    head = f"{'stage':<20} {'local s':>8} {'warm s':>8} {'cold s':>8} {'warm/local':>11} {'cold/local':>11}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r['stage']:<20} {fmt(r['local'], '.2f'):>8} {fmt(r['store, warm'], '.2f'):>8} "
            f"{fmt(r['store, cold'], '.2f'):>8} {fmt(r['store, warm / local'], '.2f'):>11} "
            f"{fmt(r['store, cold / local'], '.2f'):>11}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "day": str(day),
                "repeats": args.repeats,
                "machine": f"{platform.machine()} {os.cpu_count()} cores",
                "commit": git_commit(),
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "rows": rows,
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
