"""Serving latency of a trained day, repeated: torch eager vs ORT fp32 vs ORT int8 in one run.

Uses the pipeline's own benchmark (tasks.benchmark.benchmark) on a day's challenger and ONNX
files, `--repeats` times, and reports the median of each percentile across repeats, plus the
ratios measured within each repeat. Prints a table and writes JSON.

    python bench/latency.py --data .run/demo/data --day 1998-03-03 --repeats 5 \
        --out bench/results/latency_ml100k.json
    python bench/latency.py --ml1m --batch-sizes 1 8 64 --repeats 5 --out bench/results/latency_ml1m.json
    python bench/latency.py --ml1m --batch-sizes 1 --threads 1 --out bench/results/latency_ml1m_1thread.json

`--ml1m` times an ML-1M-sized model instead (bench/ml1m_model.py: ML-1M's 3,883-item catalogue, real
histories at sequence length 200, the project's architecture), with no make-run state needed.

`--compare-exclude-seen` exports the day's challenger twice more, with and without the seen-item
filter (`export.exclude_seen`), and times both in each repeat, alternately: the filter's cost as
a ratio measured within each repeat.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def compare_filter(model_dir: Path, inputs, params: dict, bparams: dict, repeats: int) -> dict:
    """p50 of the graph with the seen-item filter over the same graph without, per runtime and batch:
    the median over repeats of the ratio within each repeat (both timed back to back)."""
    import tempfile

    from tasks.benchmark import benchmark
    from tasks.export import export

    with tempfile.TemporaryDirectory(prefix="freshrec-latency-") as tmp:
        dirs = {flag: Path(tmp) / str(flag) for flag in (True, False)}
        for flag, out in dirs.items():
            export(model_dir, out, inputs, {**params["export"], "exclude_seen": flag})
        ratios: dict[str, list[float]] = {}
        for _ in range(repeats):
            p50 = {flag: {(r["runtime"], r["batch"]): r["p50_ms"] for r in
                          benchmark(model_dir, out, inputs, bparams, params["export"]["top_k"])["rows"]}
                   for flag, out in dirs.items()}  # fmt: skip
            for key, filtered in p50[True].items():
                ratios.setdefault(f"{key[0]} batch {key[1]}", []).append(filtered / p50[False][key])
    return {k: round(statistics.median(v), 3) for k, v in ratios.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="a data root with the day's challenger (e.g. .run/demo/data)")
    ap.add_argument("--day", help="the day whose challenger to time")
    ap.add_argument("--ml1m", action="store_true", help="time the ML-1M-sized model instead (bench/ml1m_model.py)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", help="default: params.yaml benchmark.batch_sizes")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument(
        "--threads",
        type=int,
        help="intra-op threads of every runtime (default: params.yaml "
        "benchmark.threads; `python -m serve` runs 1 per worker)",
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--compare-exclude-seen", action="store_true", help="time the graph with and without the filter")
    args = ap.parse_args()

    import torch

    from tasks.benchmark import benchmark
    from tasks.common import Layout, git_commit
    from tasks.export import parity_inputs
    from tasks.history import load_events
    from tasks.params import load_params
    from tasks.units import model_items

    params = load_params()
    if args.ml1m:
        from bench.ml1m_model import WINDOW, build

        run, inputs = build()
        params["train"]["max_len"] = WINDOW
    else:
        if args.data is None or args.day is None:
            ap.error("give --data and --day (a make-run state), or --ml1m")
        layout = Layout(args.data.resolve())
        day = dt.date.fromisoformat(args.day)
        run = layout.run(day)
        inputs = parity_inputs(
            load_events(layout, day), day, params, model_items(run / "challenger"), params["train"]["max_len"]
        )
    if args.batch_sizes:
        params["benchmark"]["batch_sizes"] = args.batch_sizes
    if args.threads:
        params["benchmark"]["threads"] = args.threads
    n = args.iterations  # every runtime and batch alike: this benchmark compares them all
    bparams = {**params["benchmark"], "iterations": n, "batch_iterations": n, "torch_iterations": n}
    top_k = params["export"]["top_k"]
    if args.compare_exclude_seen:
        filter_ratios = compare_filter(run / "challenger", inputs, params, bparams, args.repeats)
        print("filtered / unfiltered p50 (median of per-repeat ratios):", json.dumps(filter_ratios))
    reports = [benchmark(run / "challenger", run / "onnx", inputs, bparams, top_k) for _ in range(args.repeats)]
    keys = sorted({(r["runtime"], r["batch"]) for r in reports[0]["rows"]}, key=lambda k: (k[1], k[0]))
    rows = []
    for runtime, batch in keys:
        per = [next(r for r in rep["rows"] if (r["runtime"], r["batch"]) == (runtime, batch)) for rep in reports]
        row = {"runtime": runtime, "batch": batch}
        for metric in ("p50_ms", "p95_ms", "p99_ms", "qps"):
            row[metric] = round(statistics.median(p[metric] for p in per), 4)
        rows.append(row)
    ratios = {}
    for batch in params["benchmark"]["batch_sizes"]:

        def p50(rep, name, batch=batch):
            return next(r["p50_ms"] for r in rep["rows"] if r["runtime"] == name and r["batch"] == batch)

        ratios[f"batch{batch}"] = {
            "torch/ort_fp32 p50": round(
                statistics.median(p50(r, "torch_eager") / p50(r, "ort_fp32") for r in reports), 2
            ),
            "ort_fp32/ort_int8 p50": round(
                statistics.median(p50(r, "ort_fp32") / p50(r, "ort_int8") for r in reports), 2
            ),
        }
    exported = json.loads((run / "onnx" / "export.json").read_text())
    report = {
        "command": " ".join(sys.argv),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": params["benchmark"]["threads"],
            "torch": torch.__version__,
        },
        "git_commit": git_commit(),
        "model": "ML-1M-sized (bench/ml1m_model.py)" if args.ml1m else f"the challenger of {args.day}",
        "window": params["train"]["max_len"],
        "catalogue": len(json.loads((run / "challenger" / "items.json").read_text())),
        "repeats": args.repeats,
        "iterations": args.iterations,
        "median_rows": rows,
        "ratios_within_run_median": ratios,
        "onnx_size_bytes": exported["size_bytes"],
        "serve_variant_per_repeat": [r["serve_variant"] for r in reports],
        "int8_speedup_batch1_per_repeat": [r["int8_speedup_batch1"] for r in reports],
        "exclude_seen": exported.get("exclude_seen", False),
    }
    if args.compare_exclude_seen:
        report["exclude_seen_vs_none_p50_ratio"] = filter_ratios
    print(
        f"{'runtime':<12} {'batch':>5} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'QPS':>10}   (median of "
        f"{args.repeats} runs x {args.iterations} calls)"
    )
    for r in rows:
        print(
            f"{r['runtime']:<12} {r['batch']:>5} {r['p50_ms']:>9.3f} {r['p95_ms']:>9.3f} {r['p99_ms']:>9.3f} "
            f"{r['qps']:>10.1f}"
        )
    print("ratios (median of per-run ratios):", json.dumps(ratios))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
