"""Would caching a user's encoded prefix pay, and would it be exact? (issue 27, item 6)

The served graph encodes the whole window (200 positions at ML-1M scale) on every request. A prefix cache
keeps each user's keys and values per layer, so a new event costs one position: the new item's query
over the cached keys and values, through both blocks, then scoring. This measures both halves of "adopt
only if measured to pay and parity holds" on the ML-1M-sized model (bench/ml1m_model.py):

- **Pays?** The one-position step, exported to ONNX like the served graph, against the served graph
  (ORT fp32) and torch eager (the served graph's module), batch 1 and 8, one thread as served, interleaved
  rounds (tasks/benchmark.py), `--repeats` runs: medians of p50/p99 and of the within-run ratios.
- **Exact?** (a) Given the keys and values the full window itself computes, the step gives the served
  top-K (it is the same arithmetic). (b) The cache a server would hold is the previous request's: with
  right-aligned learned positions (the model's), every earlier item then sat one position further right,
  so each cached key and value is off. Measured: the step on the previous request's cache against the
  exact answer (top-K overlap, max |score difference|) on real ML-1M histories. (c) With positions counted
  from the history's start instead (a model change) the cache would be exact until the window fills;
  measured: the share of ML-1M's events that arrive after a user's 200th.

    python bench/prefix_cache.py --repeats 5 --iterations 400 --out bench/results/prefix_cache_ml1m.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def prefix_step_module(scorer):
    """A torch module for one new event on top of a cache: (window (B, W) item ids, the newest last; past keys
    and values (layers, B, heads, W - 1, head_dim) of the window's earlier positions) -> the served top-K
    (scores, indices) and the new position's keys and values (layers, B, heads, 1, head_dim), to append."""
    import torch
    from torch import nn

    from models.seqrec import PAD, attend_one, split_heads

    class PrefixStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.scorer = scorer

        def forward(self, item_ids, past_keys, past_values):
            model = self.scorer.model
            backbone = model.backbone
            window = item_ids.shape[1]
            keep = torch.cat([(item_ids[:, :-1] != PAD).long(), torch.ones_like(item_ids[:, -1:])], dim=1)
            x = model.item_emb(item_ids[:, -1:]) * model.emb_scale + backbone.wpe.weight[window - 1]  # (B, 1, H)
            new_k, new_v = [], []
            for layer, block in enumerate(backbone.h):
                attn = block.attn
                q, k, v = (split_heads(attn, t) for t in attn.c_attn(block.ln_1(x)).split(attn.split_size, dim=2))
                new_k.append(k)
                new_v.append(v)
                keys = torch.cat([past_keys[layer], k], dim=2)
                values = torch.cat([past_values[layer], v], dim=2)
                x = attend_one(block, x, q, keys, values, keep)
            scores, idx = self.scorer.rank(backbone.ln_f(x)[:, 0], item_ids)
            return scores, idx, torch.stack(new_k), torch.stack(new_v)

    return PrefixStep().eval()


def full_window_cache(model, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keys and values each block computes at every position of the windows `inputs` (B, W) in the full
    forward: (layers, B, heads, W, head_dim) each."""
    import torch

    from models.seqrec import split_heads

    keys, values = [], []

    def grab(attn):
        def hook(_module, _args, out):
            _q, k, v = out.split(attn.split_size, dim=2)
            keys.append(split_heads(attn, k))
            values.append(split_heads(attn, v))

        return hook

    hooks = [block.attn.c_attn.register_forward_hook(grab(block.attn)) for block in model.backbone.h]
    try:
        with torch.inference_mode():
            model(torch.from_numpy(inputs))
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(keys).numpy(), torch.stack(values).numpy()


def agreement(ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray]) -> dict:
    """Top-K overlap and max |score difference| of `got` against `ref` (scores, indices), finite entries."""
    overlap = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(ref[1], got[1], strict=True)])
    ok = np.isfinite(ref[0]) & np.isfinite(got[0])
    return {"top_k_overlap": round(float(overlap), 4), "max_abs_diff": float(np.abs(ref[0] - got[0])[ok].max())}


def exactness(scorer, inputs: np.ndarray) -> dict:
    """The step against the served graph's top-K on `inputs` (B, W): (a) on the keys and values the window
    itself computes; (b) on those of the previous request, the same items without the newest, right-aligned
    as served (each item then one position further right than now), as a server holding a cache would have
    them."""
    import torch

    step = prefix_step_module(scorer)
    keys, values = full_window_cache(scorer.model, inputs)
    previous = np.concatenate([np.zeros_like(inputs[:, :1]), inputs[:, :-1]], axis=1)  # right-aligned, as served
    pk, pv = full_window_cache(scorer.model, previous)
    with torch.inference_mode():
        served = tuple(t.numpy() for t in scorer(torch.from_numpy(inputs)))
        own = step(*(torch.from_numpy(a) for a in (inputs, keys[:, :, :, :-1], values[:, :, :, :-1])))
        stale = step(*(torch.from_numpy(a) for a in (inputs, pk[:, :, :, 1:], pv[:, :, :, 1:])))
    return {
        "own_window_cache": agreement(served, (own[0].numpy(), own[1].numpy())),
        "previous_request_cache": agreement(served, (stale[0].numpy(), stale[1].numpy())),
        "cached_keys_max_abs_diff": float(np.abs(pk[:, :, :, 1:] - keys[:, :, :, :-1]).max()),
    }


def events_past_window(window: int) -> dict:
    """ML-1M's events by the user's history length when they arrive: how many come after the user's
    `window`-th event (where positions counted from the history's start would run out)."""
    from tasks.sources import load_dataset

    events = load_dataset("ml-1m").events  # in time order (tasks/sources.py)
    rank = events.groupby("user_id").cumcount()  # 0 for a user's first event
    lengths = events.groupby("user_id").size()
    return {
        "events": len(events),
        "events_after_position": window,
        "share_of_events": round(float((rank >= window).mean()), 4),
        "users": len(lengths),
        "share_of_users_longer": round(float((lengths > window).mean()), 4),
    }


def redis_round_trip(cache_bytes: int, append_bytes: int, calls: int) -> dict:
    """What a shared cache tier costs per request: GET of one user's cached keys and values and APPEND of the
    new position's, against a throwaway redis-server on 127.0.0.1 (stopped by PID), redis-py, p50/p99 ms."""
    import shutil
    import socket
    import subprocess
    import time

    import redis

    exe = shutil.which("redis-server")
    if not exe:
        raise SystemExit("redis-server is missing: apt-get install redis-server (or leave out --redis)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="freshrec-redis-") as tmp:
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            client = redis.Redis("127.0.0.1", port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            else:
                raise SystemExit(f"redis-server did not answer on 127.0.0.1:{port} within 5 s (leave out --redis)")
            client.set("user", np.random.default_rng(0).bytes(cache_bytes))
            delta = bytes(append_bytes)
            ms = np.empty(calls)
            for i in range(calls):
                t0 = time.perf_counter()
                client.get("user")
                client.append("user", delta)
                ms[i] = (time.perf_counter() - t0) * 1e3
                if i % 10 == 9:  # untimed: the key back to one window's size
                    client.set("user", np.random.default_rng(i).bytes(cache_bytes))
        finally:
            proc.terminate()
            proc.wait(10)
    p50, p99 = np.percentile(ms[50:], [50, 99])
    return {"cache_bytes": cache_bytes, "append_bytes": append_bytes, "calls": calls, "p50_ms": round(float(p50), 4),
            "p99_ms": round(float(p99), 4)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (python -m serve runs 1 per worker)")
    ap.add_argument(
        "--trained",
        type=Path,
        help="a trained ML-1M model folder (config.json, weights.safetensors, "
        "items.json; e.g. bench/replay.py's <work>/warm) whose cache exactness to measure too",
    )
    ap.add_argument("--redis", action="store_true", help="also time a shared cache tier's round trip (redis-server)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    import torch

    from bench.ml1m_model import WINDOW, build, longest_windows
    from models.seqrec import SeqRecModel, TopKScorer
    from tasks.benchmark import interleaved, summarise, tile
    from tasks.common import git_commit
    from tasks.export import FP32_FILE, session
    from tasks.params import load_params
    from tasks.sources import load_dataset

    params = load_params()
    folder, inputs = build()
    top_k, exclude_seen = params["export"]["top_k"], params["export"]["exclude_seen"]
    model = SeqRecModel.load(folder / "challenger")
    scorer = TopKScorer(model, top_k, exclude_seen).eval()
    step = prefix_step_module(scorer)
    torch.set_num_threads(args.threads)

    keys, values = full_window_cache(model, inputs)
    with torch.inference_mode():
        served = tuple(t.numpy() for t in scorer(torch.from_numpy(inputs)))
    exact = {"untrained_window200": exactness(scorer, inputs)}
    if args.trained:
        trained = SeqRecModel.load(args.trained)
        items = json.loads((args.trained / "items.json").read_text())
        exact["trained"] = {"model": str(args.trained), "window": trained.config.max_len,
                            **exactness(TopKScorer(trained, top_k, exclude_seen).eval(),
                                        longest_windows(load_dataset("ml-1m").events, items,
                                                        trained.config.max_len))}  # fmt: skip
    past_window = events_past_window(WINDOW)

    with tempfile.TemporaryDirectory(prefix="freshrec-prefix-") as tmp:
        step_file = Path(tmp) / "prefix_step.onnx"
        batch = torch.export.Dim("batch", min=1, max=4096)
        torch.onnx.export(
            step, (torch.from_numpy(inputs[:2]), torch.from_numpy(keys[:, :2, :, :-1]),
                   torch.from_numpy(values[:, :2, :, :-1])),
            str(step_file), input_names=["item_ids", "past_keys", "past_values"],
            output_names=["scores", "items", "new_keys", "new_values"],
            dynamic_shapes=({0: batch}, {1: batch}, {1: batch}), opset_version=params["export"]["opset"],
            dynamo=True, verbose=False, external_data=False,
        )  # fmt: skip
        full_s = session(folder / "onnx" / FP32_FILE, args.threads)
        step_s = session(step_file, args.threads)
        got = step_s.run(None, {"item_ids": inputs, "past_keys": keys[..., :-1, :], "past_values": values[..., :-1, :]})
        exact["onnx_step_vs_served"] = agreement(served, (got[0], got[1]))
        step_nodes = len(__import__("onnx").load(str(step_file)).graph.node)

        runs = []
        for _ in range(args.repeats):
            rows = {}
            for b in args.batch_sizes:
                x = tile(inputs, b)
                idx = np.resize(np.arange(len(inputs)), b)
                feeds = {"item_ids": x, "past_keys": np.ascontiguousarray(keys[:, idx, :, :-1]),
                         "past_values": np.ascontiguousarray(values[:, idx, :, :-1])}  # fmt: skip
                xt = torch.from_numpy(x)

                def torch_full(xt=xt):
                    with torch.inference_mode():
                        scorer(xt)

                runners = {
                    "torch_eager_full": torch_full,
                    "ort_fp32_full": lambda x=x: full_s.run(None, {"item_ids": x}),
                    "ort_fp32_prefix_step": lambda f=feeds: step_s.run(None, f),
                }
                times = interleaved(runners, 20, args.iterations, 8)
                rows[b] = {name: summarise(np.concatenate(t), b) for name, t in times.items()}
            runs.append(rows)

    table = []
    for b in args.batch_sizes:
        for name in runs[0][b]:
            row = {"runtime": name, "batch": b}
            for metric in ("p50_ms", "p95_ms", "p99_ms"):
                row[metric] = round(statistics.median(r[b][name][metric] for r in runs), 4)
            table.append(row)
    ratios = {
        f"batch{b}": {
            "torch_eager_full/ort_fp32_prefix_step p50": round(statistics.median(
                r[b]["torch_eager_full"]["p50_ms"] / r[b]["ort_fp32_prefix_step"]["p50_ms"] for r in runs), 2),
            "ort_fp32_full/ort_fp32_prefix_step p50": round(statistics.median(
                r[b]["ort_fp32_full"]["p50_ms"] / r[b]["ort_fp32_prefix_step"]["p50_ms"] for r in runs), 2),
            "torch_eager_full/ort_fp32_full p50": round(statistics.median(
                r[b]["torch_eager_full"]["p50_ms"] / r[b]["ort_fp32_full"]["p50_ms"] for r in runs), 2),
        }
        for b in args.batch_sizes
    }  # fmt: skip
    layers, _, heads, _, head_dim = keys.shape
    report = {
        "command": " ".join(sys.argv),
        "git_commit": git_commit(),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "torch": torch.__version__,
        },
        "model": "ML-1M-sized (bench/ml1m_model.py)",
        "window": WINDOW,
        "repeats": args.repeats,
        "iterations": args.iterations,
        "median_rows": table,
        "ratios_within_run_median": ratios,
        "exactness": exact,
        "ml1m_events_past_window": past_window,
        "cache_bytes_per_user_fp32": int(layers * 2 * heads * WINDOW * head_dim * 4),
        "prefix_step_onnx_nodes": step_nodes,
    }
    print(f"{'runtime':<22} {'batch':>5} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}   (median of {args.repeats} runs)")
    for r in table:
        print(f"{r['runtime']:<22} {r['batch']:>5} {r['p50_ms']:>9.3f} {r['p95_ms']:>9.3f} {r['p99_ms']:>9.3f}")
    print("ratios (median of per-run ratios):", json.dumps(ratios))
    print("exactness:", json.dumps(exact))
    print("ML-1M events past the window:", json.dumps(past_window))
    if args.redis:
        report["redis_round_trip"] = redis_round_trip(report["cache_bytes_per_user_fp32"],
                                                      int(layers * 2 * heads * head_dim * 4), 2000)  # fmt: skip
        print("a shared cache tier per request (GET + APPEND):", json.dumps(report["redis_round_trip"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
