"""Benchmark: serving latency of the challenger, torch eager vs ORT fp32 vs ORT int8, in one run.

Real inputs (the day's holdout histories, tiled to the batch size), warm-up calls
excluded, `iterations` timed calls per (runtime, batch). Reports p50/p95/p99 in ms
and QPS (sequences per second). Chooses the variant to serve: int8 only where it
passed parity and its median latency at batch 1 beats fp32's by `int8_min_speedup` (quantize only where it pays).
Gate: the served variant's batch-1 p99 within `p99_budget_ms`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from models.seqrec import SeqRecModel, TopKScorer
from tasks.common import GateFailed, Layout, read_json, write_json
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


def benchmark(model_dir: Path, onnx_dir: Path, inputs: np.ndarray, params: dict, top_k: int) -> dict:
    threads = params["threads"]
    torch.set_num_threads(threads)
    export_report = read_json(onnx_dir / EXPORT_FILE)  # torch is timed serving what the graphs serve
    scorer = TopKScorer(SeqRecModel.load(model_dir), top_k, export_report.get("exclude_seen", False)).eval()
    sessions = {"ort_fp32": session(onnx_dir / FP32_FILE, threads), "ort_int8": session(onnx_dir / INT8_FILE, threads)}
    rows = []
    for batch in params["batch_sizes"]:
        x = tile(inputs, batch)
        xt = torch.from_numpy(x)

        def torch_call(xt=xt):
            with torch.inference_mode():
                scorer(xt)

        runners = {"torch_eager": torch_call}
        runners |= {name: (lambda s=s, x=x: s.run(None, {"item_ids": x})) for name, s in sessions.items()}
        for name, fn in runners.items():
            rows.append(
                {
                    "runtime": name,
                    "batch": batch,
                    **summarise(_time_calls(fn, params["warmup"], params["iterations"]), batch),
                }
            )
    b1 = {r["runtime"]: r for r in rows if r["batch"] == min(params["batch_sizes"])}
    # p50, not p99: the median is stable run to run, the tail of a 2 ms call is scheduler noise
    speedup = b1["ort_fp32"]["p50_ms"] / b1["ort_int8"]["p50_ms"]
    int8_pays = export_report["int8"]["passed"] and speedup >= params["int8_min_speedup"]
    served = "ort_int8" if int8_pays else "ort_fp32"
    p99 = b1[served]["p99_ms"]
    return {
        "threads": threads,
        "warmup": params["warmup"],
        "iterations": params["iterations"],
        "device": "cuda" if "CUDAExecutionProvider" in sessions["ort_fp32"].get_providers() else "cpu",
        "rows": rows,
        "serve_variant": "int8" if int8_pays else "fp32",
        "int8_speedup_p50_batch1": round(speedup, 3),
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
    from tasks.train import read_items

    run_dir = layout.run(day)
    inputs = parity_inputs(
        load_events(layout, day), day, params, read_items(run_dir / "challenger"), params["train"]["max_len"]
    )
    report = benchmark(run_dir / "challenger", run_dir / "onnx", inputs, params["benchmark"], params["export"]["top_k"])
    write_json(run_dir / BENCHMARK_FILE, report)
    for r in report["rows"]:
        LOG.info("benchmark %s batch %d: p50 %.3f ms, p99 %.3f ms, %.0f QPS", r["runtime"], r["batch"], r["p50_ms"],
                 r["p99_ms"], r["qps"])  # fmt: skip
    LOG.info("serving %s; latency gate %s: %s", report["serve_variant"],
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
