"""What a training step costs, and what it buys: the loss and execution variants of tasks.train.fit
side by side in one run.

Part 1, cost: ms per step on ML-1M at the quality configuration (max_len 200, hidden 128, 3 blocks,
4 heads, batch 128), on the same random sample of batches for every variant; the first epoch over
the sample is warm-up (torch.compile compiles there), the next ones are timed. Repeated --repeats
times; the table gives the median and, per repeat, the ratio to the baseline measured in that repeat.
Part 2, quality: each variant trained to early stopping with bench/quality.py's protocol on
--quality-dataset (leave-one-out, full ranking), test NDCG@10 / HR@10 and its training seconds.

    python bench/step_cost.py --out bench/results/step_cost_cpu.json                  # both parts
    python bench/step_cost.py --skip-quality --repeats 1 --out /tmp/cost.json         # cost only
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchdata import load_data

VARIANTS = {  # name -> bench/quality.py options; the first is the baseline
    "full softmax (SDPA)": [],
    "full softmax, eager attention": ["--attn", "eager"],
    "sampled 256 + logQ": ["--loss", "sampled", "--negatives", "256"],
    "sampled 1024 + logQ": ["--loss", "sampled", "--negatives", "1024"],
    "sampled 1024, no logQ": ["--loss", "sampled", "--negatives", "1024", "--no-logq"],
    "full + length bucketing": ["--bucketing"],
    "sampled 1024 + logQ + bucketing": ["--loss", "sampled", "--negatives", "1024", "--bucketing"],
    "full + torch.compile": ["--compile"],
    "full + bf16 autocast": ["--bf16", "on"],
    "LiGR blocks (gated residuals, SwiGLU)": ["--block", "ligr"],
    "full + repeat score": ["--repeat-score"],
    "sampled 256 + logQ + repeat score": ["--loss", "sampled", "--negatives", "256", "--repeat-score"],
}
COST_ONLY_SAME_AS = {"sampled 1024, no logQ": "sampled 1024 + logQ"}  # same arithmetic: not timed twice
# the variants that change what is learned (the loss, the batches, the block); eager attention and
# torch.compile compute the same function, bf16 the same in lower precision (its cost on a CPU
# without bf16 units rules it out here)
QUALITY = ["full softmax (SDPA)", "sampled 256 + logQ", "sampled 1024 + logQ", "sampled 1024, no logQ",
           "full + length bucketing", "sampled 1024 + logQ + bucketing",
           "LiGR blocks (gated residuals, SwiGLU)", "full + repeat score",
           "sampled 256 + logQ + repeat score"]  # fmt: skip


def quality_args(extra: list[str], common: list[str]):
    import quality

    ap = argparse.ArgumentParser()
    quality.add_args(ap)
    return ap.parse_args(common + extra + ["--out", "unused.json"])


def step_ms(data: dict, opts, batches: int, epochs: int, seed: int) -> float:
    """Median ms per step over the timed epochs of a `batches`-batch sample."""
    import random

    import torch
    from quality import model_config, recipe_of

    from models.seqrec import SeqRecModel
    from tasks.train import fit, set_seed

    set_seed(seed)
    sample = random.Random(seed).sample(data["examples"], batches * opts.batch_size)
    model = SeqRecModel(model_config(opts, len(data["items"])))
    if opts.attn != "sdpa":
        model.backbone.set_attn_implementation(opts.attn)
    marks = [time.perf_counter()]

    def tick(epoch: int) -> bool:
        marks.append(time.perf_counter())
        return True

    opts.max_epochs = epochs
    fit(model, sample, recipe_of(opts), seed, torch.device("cpu"), progress=False, on_epoch=tick)
    per_epoch = [b - a for a, b in itertools.pairwise(marks[1:])]  # epoch 1 is warm-up
    return 1000 * statistics.median(per_epoch) / batches


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cost-dataset", default="ml-1m")
    ap.add_argument("--quality-dataset", default="ml-100k")
    ap.add_argument("--config", default="--hidden 128 --layers 3 --heads 4 --dropout 0.3 --max-len 200",
                    help="bench/quality.py model options shared by every variant")  # fmt: skip
    ap.add_argument("--batches", type=int, default=6, help="batches in the timed sample")
    ap.add_argument("--epochs", type=int, default=3, help="passes over the sample (the first is warm-up)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", nargs="*", help="names to run (default: all)")
    ap.add_argument("--quality-config", default="--hidden 64 --layers 2 --heads 2 --dropout 0.2 --max-len 50",
                    help="model options for part 2 (default: params.yaml's model)")  # fmt: skip
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--quality-features", type=Path, help="MiniLM cache of the quality dataset (default .run/features)")
    ap.add_argument("--checkpoint-root", type=Path, help="the quality runs' checkpoints (default .run/step_cost)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    import quality
    import torch

    from tasks.common import write_json

    sitting = quality.this_sitting()  # once: the report's commit and machine, and the quality runs'
    names = args.variants or list(VARIANTS)
    if unknown := [n for n in names if n not in VARIANTS]:
        raise SystemExit(f"unknown variant(s) {unknown}: the variants are {list(VARIANTS)}")
    common = args.config.split()
    base = quality_args([], common)
    cost: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    checkpoints = []
    ns = argparse.Namespace(dataset=args.cost_dataset, events=None, items=None, features=None)
    data = None if args.skip_cost else quality.split(load_data(ns, need_items=False)[0], base.max_len)
    for r in range(0 if args.skip_cost else args.repeats):
        for name in names:
            if name in COST_ONLY_SAME_AS:
                continue
            ms = step_ms(data, quality_args(VARIANTS[name], common), args.batches, args.epochs, args.seed)
            cost[name].append(round(ms, 1))
            print(f"repeat {r + 1}: {name:<34} {ms:8.1f} ms/step", flush=True)
        ref = cost[names[0]][-1]
        for name in names:
            if cost[name]:
                ratios[name].append(round(cost[name][-1] / ref, 3))
    for name, same in COST_ONLY_SAME_AS.items():
        if name in names and same in cost:
            cost[name], ratios[name] = cost[same], ratios[same]
    rows = [{"variant": n, "options": " ".join(VARIANTS[n]), "ms_per_step": cost[n],
             "median_ms": statistics.median(cost[n]) if cost[n] else None,
             "ratio_to_baseline": statistics.median(ratios[n]) if ratios[n] else None} for n in names]  # fmt: skip
    if not args.skip_quality:
        ns = argparse.Namespace(dataset=args.quality_dataset, events=None, items=None, features=args.quality_features)
        q_events, q_items, q_name = load_data(ns, need_items=False)
        from benchdata import features_for

        features = features_for(ns, q_items, q_name)
        q_common = args.quality_config.split()
        root = args.checkpoint_root or quality.ROOT / ".run" / "step_cost"
        for row in [r for r in rows if r["variant"] in QUALITY]:
            opts = quality_args(VARIANTS[row["variant"]], q_common)
            opts.checkpoint_dir = root / row["variant"].replace(" ", "_")
            ckpt, res = quality.run(quality.split(q_events, opts.max_len), features, True, opts, sitting)  # resumable
            checkpoints.append(ckpt)
            keys = ("test_ndcg@10", "test_hr@10", "test_window_excluded", "test_seen_excluded", "best_epoch",
                    "train_seconds", "repeat_weight")  # fmt: skip
            row |= {"quality": {k: res[k] for k in keys if k in res}}
            print(f"{row['variant']:<34} NDCG@10 {res['test_ndcg@10']:.4f}  HR@10 {res['test_hr@10']:.4f}", flush=True)
    report = {"command": "python bench/step_cost.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": {"device": sitting["device"], "threads": sitting["threads"], "torch": torch.__version__},
              "git_commit": sitting["git_commit"], "cost_dataset": args.cost_dataset,
              "quality_dataset": args.quality_dataset, "config": args.config, "quality_config": args.quality_config,
              "batch_size": base.batch_size, "sample_batches": args.batches, "rows": rows}  # fmt: skip
    print(f"\n{'variant':<34} {'ms/step':>9} {'x base':>7} {'NDCG@10':>8} {'HR@10':>7}")
    for row in rows:
        q = row.get("quality", {})
        nan = float("nan")
        print(f"{row['variant']:<34} {row['median_ms'] or nan:>9.1f} {row['ratio_to_baseline'] or nan:>7.2f} "
              f"{q.get('test_ndcg@10', nan):>8.4f} {q.get('test_hr@10', nan):>7.4f}")  # fmt: skip
    write_json(args.out, report)  # atomically; only then the quality runs' checkpoints go
    for ckpt in checkpoints:
        ckpt.clear()
    return report


if __name__ == "__main__":
    main()
