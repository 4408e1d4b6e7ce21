"""What serve/ adopted without a load test of its own, measured (issue 27, item 5): ONNX Runtime's graph
optimisation level and CPU memory arena, and orjson against the standard library for the answers.

- **Session options.** serve/model.py `session` opens the served graph with every graph optimisation
  (ORT_ENABLE_ALL) and ONNX Runtime's default arena. Here each level (basic, extended, all) with the arena on
  and off times the same graph, batch 1 and 8, one thread as served, interleaved in rounds
  (tasks/benchmark.py), `--repeats` runs: medians of p50/p99, and each option's p50 over the served one's
  within each run. Both served variants (fp32, int8) of the make-run champion (from a `make run` state) and
  of the ML-1M-sized model (bench/ml1m_model.py).
- **Answer encoding.** serve/app.py writes answers with orjson. Here a real answer (ten items with scores;
  and a batch of 64 of them) encoded by `orjson.dumps` and by `json.dumps(...).encode()`: microseconds a call,
  median of `--repeats` runs.

    python bench/serve_parts.py --state .run/demo --out bench/results/serve_parts.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LEVELS = ("basic", "extended", "all")
SERVED = "all, arena on"  # serve/model.py session()'s defaults


def time_options(onnx: Path, inputs: np.ndarray, batches: list[int], iterations: int, repeats: int) -> dict:
    from serve.model import session
    from tasks.benchmark import interleaved, summarise, tile

    names = [f"{level}, arena {'on' if arena else 'off'}" for level in LEVELS for arena in (True, False)]
    sessions = {n: session(onnx, 1, n.split(",")[0], n.endswith("on")) for n in names}
    runs = []
    for _ in range(repeats):
        run = {}
        for b in batches:
            x = tile(inputs, b)
            times = interleaved({n: (lambda s=s, x=x: s.run(None, {"item_ids": x})) for n, s in sessions.items()},
                                20, iterations, 8)  # fmt: skip
            run[b] = {n: summarise(np.concatenate(t), b) for n, t in times.items()}
        runs.append(run)
    rows = []
    for b in batches:
        for n in names:
            rows.append({
                "option": n, "batch": b,
                **{m: round(statistics.median(r[b][n][m] for r in runs), 4) for m in ("p50_ms", "p99_ms")},
                "p50_vs_served": round(statistics.median(r[b][n]["p50_ms"] / r[b][SERVED]["p50_ms"] for r in runs), 3),
            })  # fmt: skip
    return {"file": onnx.name, "rows": rows}


def time_encoding(repeats: int, calls: int = 20_000) -> dict:
    import orjson

    rng = np.random.default_rng(0)
    ids, scores = rng.integers(1, 1700, 10), np.sort(rng.normal(5, 1, 10))[::-1]
    items = [{"item": str(int(i)), "score": round(float(s), 6)} for i, s in zip(ids, scores, strict=True)]
    one = {"version": "1998-03-03-fb08afc9", "unknown": 1, "truncated": 0, "items": items}
    batch = {"version": one["version"], "results": [{k: v for k, v in one.items() if k != "version"}] * 64}
    out = {}
    for label, body in (("one answer", one), ("a batch of 64", batch)):
        n = calls if label == "one answer" else calls // 20
        per = {"orjson": [], "json": []}
        for _ in range(repeats):
            for name, fn in (("orjson", orjson.dumps), ("json", lambda b: json.dumps(b).encode())):
                t0 = time.perf_counter()
                for _ in range(n):
                    fn(body)
                per[name].append((time.perf_counter() - t0) / n * 1e6)
        us = {name: round(statistics.median(v), 2) for name, v in per.items()}
        out[label] = {
            "us_per_call": us,
            "bytes": len(orjson.dumps(body)),
            "json/orjson": round(us["json"] / us["orjson"], 2),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--state", type=Path, default=Path(".run/demo"), help="a `make run` state (its bootstrap day's graphs)"
    )
    ap.add_argument("--day", default="1998-02-28", help="the day of the state whose challenger's graphs to time")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from bench.ml1m_model import build
    from tasks.common import Layout, git_commit
    from tasks.export import parity_inputs
    from tasks.history import load_events
    from tasks.params import load_params
    from tasks.units import model_items

    params = load_params()
    layout = Layout((args.state / "data").resolve())
    day = dt.date.fromisoformat(args.day)
    run = layout.run(day)
    if not (run / "onnx" / "model.onnx").exists():
        raise SystemExit(f"no exported graphs in {run / 'onnx'}: run `make run` first (or give --state/--day)")
    demo_inputs = parity_inputs(
        load_events(layout, day), day, params, model_items(run / "challenger"), params["train"]["max_len"]
    )
    ml1m_folder, ml1m_inputs = build()
    report = {
        "command": " ".join(sys.argv), "git_commit": git_commit(),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": 1},
        "repeats": args.repeats, "iterations": args.iterations, "session_options": {},
    }  # fmt: skip
    for label, folder, inputs in (("make-run bootstrap", run / "onnx", demo_inputs),
                                  ("ML-1M-sized", ml1m_folder / "onnx", ml1m_inputs)):  # fmt: skip
        for file in ("model.onnx", "model.int8.onnx"):
            key = f"{label}, {file}"
            report["session_options"][key] = time_options(folder / file, inputs, args.batch_sizes, args.iterations,
                                                          args.repeats)  # fmt: skip
            print(
                f"\n{key}: p50 / p99 ms (median of {args.repeats} runs), p50 over the served options' (all, arena on)"
            )
            for r in report["session_options"][key]["rows"]:
                print(f"  {r['option']:<20} batch {r['batch']:>2}  {r['p50_ms']:>7.3f} / {r['p99_ms']:>7.3f}"
                      f"   x{r['p50_vs_served']:.3f}")  # fmt: skip
    report["encoding"] = time_encoding(args.repeats)
    print("\nanswer encoding, us a call:", json.dumps(report["encoding"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
