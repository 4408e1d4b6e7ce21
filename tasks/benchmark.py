"""Benchmark: serving latency of the challenger, torch eager vs ORT fp32 vs ORT int8, in one run.

Real inputs (the day's holdout histories, tiled to the batch size), warm-up calls
excluded, `iterations` timed calls per (runtime, batch), taken in `rounds` turns so that the
runtimes are interleaved (a noisy neighbour slows all of them, not one). Reports p50/p95/p99
in ms and QPS (sequences per second). Chooses the variant to serve: int8 only where it passed
parity and is credibly faster at batch 1: the median over rounds of fp32/int8 (each round's
medians) is the speedup, and its lower confidence bound (bootstrap over rounds, fixed seed) must
reach `int8_min_speedup`. One 200-call run once flipped the same model's choice from run to run
(speedups 0.61-1.58x); a bound that must clear the bar keeps a model with no real gain on fp32.
Gate: the served variant's batch-1 p99 within `p99_budget_ms`.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from models.seqrec import SeqRecModel, TopKScorer
from tasks.common import GateFailed, Layout, intra_op_threads, read_json, write_json
from tasks.export import EXPORT_FILE, FP32_FILE, INT8_FILE, session
from tasks.params import step_cli

LOG = logging.getLogger(__name__)

BENCHMARK_FILE = "benchmark.json"


def _time_calls(fn, warmup: int, iterations: int) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(iterations)
    for i in range(iterations):
        t0 = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - t0) * 1e3
    return out


def summarise(ms: np.ndarray, batch: int) -> dict[str, float]:
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "p50_ms": round(float(p50), 4),
        "p95_ms": round(float(p95), 4),
        "p99_ms": round(float(p99), 4),
        "qps": round(batch * 1e3 / float(ms.mean()), 1),
    }


def tile(inputs: np.ndarray, batch: int) -> np.ndarray:
    reps = -(-batch // len(inputs))
    return np.tile(inputs, (reps, 1))[:batch]


def interleaved(runners: dict, warmup: int, iterations: int | dict, rounds: int) -> dict[str, list[np.ndarray]]:
    """Per runtime, `rounds` arrays of call times in ms: in each round every runtime times its
    iterations / rounds calls in turn (`iterations`: one count, or one per runtime), the order rotating so
    none always goes first. Python's garbage collector is off while the calls are timed (as `timeit` does):
    in a big process (an Airflow task holds torch and Airflow) one collection can stall a runtime's turn for
    tens of milliseconds, and a stalled turn is a wrong ratio."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    names = list(runners)
    counts = iterations if isinstance(iterations, dict) else dict.fromkeys(names, iterations)
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                out[name].append(_time_calls(runners[name], 0, max(1, counts[name] // rounds)))
    finally:
        if enabled:
            gc.enable()
    return out


def speedup_bound(fp32: list[np.ndarray], int8: list[np.ndarray], confidence: float) -> tuple[float, float]:
    """(median over rounds of fp32/int8 median latency, its lower `confidence` bound by a bootstrap over
    rounds with a fixed seed: the same timings always give the same bound)."""
    ratios = np.array([np.median(a) / np.median(b) for a, b in zip(fp32, int8, strict=True)])
    rng = np.random.default_rng(0)
    boot = np.median(rng.choice(ratios, size=(2000, len(ratios)), replace=True), axis=1)
    return float(np.median(ratios)), float(np.quantile(boot, 1 - confidence))


def benchmark(model_dir: Path, onnx_dir: Path, inputs: np.ndarray, params: dict, top_k: int) -> dict:
    """Time the three runtimes at `params["threads"]` intra-op threads (torch's count put back after)."""
    with intra_op_threads(params["threads"]):
        return _benchmark(model_dir, onnx_dir, inputs, params, top_k)


def _benchmark(model_dir: Path, onnx_dir: Path, inputs: np.ndarray, params: dict, top_k: int) -> dict:
    threads = params["threads"]
    export_report = read_json(onnx_dir / EXPORT_FILE)  # torch is timed serving what the graphs serve
    scorer = TopKScorer(SeqRecModel.load(model_dir), top_k, export_report.get("exclude_seen", False)).eval()
    sessions = {"ort_fp32": session(onnx_dir / FP32_FILE, threads), "ort_int8": session(onnx_dir / INT8_FILE, threads)}
    rows, by_batch = [], {}
    b1 = min(params["batch_sizes"])
    for batch in params["batch_sizes"]:
        x = tile(inputs, batch)
        xt = torch.from_numpy(x)

        def torch_call(xt=xt):
            with torch.inference_mode():
                scorer(xt)

        runners = {"torch_eager": torch_call}
        runners |= {name: (lambda s=s, x=x: s.run(None, {"item_ids": x})) for name, s in sessions.items()}
        # the gate and the int8 choice are decided at the smallest batch; the larger ones measure throughput,
        # torch eager is the reference the graphs are compared with (the slowest calls: the fewest)
        n = params["iterations"] if batch == b1 else params["batch_iterations"]
        iterations = dict.fromkeys(sessions, n) | {"torch_eager": min(n, params["torch_iterations"])}
        warmup = params["warmup"] if batch == b1 else max(1, params["warmup"] * n // params["iterations"])
        times = interleaved(runners, warmup, iterations, params["rounds"])
        by_batch[batch] = times
        rows += [{"runtime": name, "batch": batch, **summarise(np.concatenate(t), batch)} for name, t in times.items()]
    speedup, lower = speedup_bound(by_batch[b1]["ort_fp32"], by_batch[b1]["ort_int8"], params["confidence"])
    int8_pays = export_report["int8"]["passed"] and lower >= params["int8_min_speedup"]
    served = "ort_int8" if int8_pays else "ort_fp32"
    p99 = next(r["p99_ms"] for r in rows if r["batch"] == b1 and r["runtime"] == served)
    return {
        "threads": threads,
        "warmup": params["warmup"],
        "iterations": params["iterations"],
        "batch_iterations": params["batch_iterations"],
        "torch_iterations": params["torch_iterations"],
        "rounds": params["rounds"],
        "device": "cuda" if "CUDAExecutionProvider" in sessions["ort_fp32"].get_providers() else "cpu",
        "rows": rows,
        "serve_variant": "int8" if int8_pays else "fp32",
        "int8_speedup_batch1": {
            "median": round(speedup, 3),
            "lower_bound": round(lower, 3),
            "confidence": params["confidence"],
            "needed": params["int8_min_speedup"],
            "parity_passed": export_report["int8"]["passed"],
        },
        "serve_file": INT8_FILE if int8_pays else FP32_FILE,
        "gate": {
            "passed": p99 <= params["p99_budget_ms"],
            "reason": f"{served} batch-1 p99 {p99:.3f} ms vs budget {params['p99_budget_ms']} ms",
        },
    }


def format_table(report: dict) -> str:
    lines = [f"{'runtime':<12} {'batch':>5} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'QPS':>10}"]
    lines += [
        f"{r['runtime']:<12} {r['batch']:>5} {r['p50_ms']:>9.3f} {r['p95_ms']:>9.3f} {r['p99_ms']:>9.3f} "
        f"{r['qps']:>10.1f}"
        for r in report["rows"]
    ]
    return "\n".join(lines)


def run(day: dt.date, params: dict, layout: Layout) -> dict:
    """Benchmark day D's challenger; raise GateFailed if the served variant misses the p99 budget."""
    from tasks.export import parity_inputs
    from tasks.history import load_events
    from tasks.units import model_items

    run_dir = layout.run(day)
    rows = max(params["benchmark"]["batch_sizes"])  # real histories, enough for the largest batch (tiled)
    inputs = parity_inputs(
        load_events(layout, day), day, params, model_items(run_dir / "challenger"), params["train"]["max_len"], rows
    )
    report = benchmark(run_dir / "challenger", run_dir / "onnx", inputs, params["benchmark"], params["export"]["top_k"])
    write_json(run_dir / BENCHMARK_FILE, report)
    for r in report["rows"]:
        LOG.info("benchmark %s batch %d: p50 %.3f ms, p99 %.3f ms, %.0f QPS", r["runtime"], r["batch"], r["p50_ms"],
                 r["p99_ms"], r["qps"])  # fmt: skip
    sp = report["int8_speedup_batch1"]
    LOG.info("serving %s (int8 speedup at batch 1: median %.2fx, %.0f%% lower bound %.2fx, needed %.2fx, parity %s); "
             "latency gate %s: %s", report["serve_variant"], sp["median"], 100 * sp["confidence"], sp["lower_bound"],
             sp["needed"], "passed" if sp["parity_passed"] else "failed",
             "passed" if report["gate"]["passed"] else "FAILED", report["gate"]["reason"])  # fmt: skip
    if not report["gate"]["passed"]:
        raise GateFailed(f"latency gate failed for {day}: {report['gate']['reason']}; nothing will be promoted")
    return report


def main(argv: list[str] | None = None) -> None:
    _args, params, day = step_cli(__doc__, argv)
    report = run(day, params, Layout.default())
    print(format_table(report))
    print(json.dumps(report["gate"]))


if __name__ == "__main__":
    main()
