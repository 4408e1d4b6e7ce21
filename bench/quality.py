"""Offline quality on MovieLens-1M, the protocol of ../shared/ANCHORS.md: leave-one-out per user
(last item = test, the one before = validation), FULL ranking over all 3,706 items, HR@10 and
NDCG@10 averaged over users. The pipeline's own model (models.seqrec), training loop
(tasks.train.fit, full-softmax cross-entropy) and ranking code (tasks.evaluate.target_ranks).

    python bench/quality.py --hidden 128 --layers 3 --heads 4 --dropout 0.3 \
        --out bench/results/quality_ml1m.json                                   # a GPU worker: minutes
    python bench/quality.py --text-init both ...                                # MiniLM vs random init

One optimizer and one learning-rate schedule span the run; validation NDCG@10 is checked every
--eval-every epochs and training stops after --patience checks without improvement; the test
figures are those of the best validation checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchdata import add_data_args, device_name, features_for, load_data


def split(events, max_len: int) -> dict:
    """Leave-one-out split, once per run: training windows, validation and test holdouts."""
    import numpy as np

    from tasks.evaluate import Holdout
    from tasks.history import sequences, windows

    items = sorted(events["item_id"].unique())
    index = {item: i + 1 for i, item in enumerate(items)}
    seqs = {u: s for u, s in sequences(events, index).items() if len(s) >= 3}
    examples = [w for s in seqs.values() for w in windows(s[:-2], max_len, all_chunks=True)]

    def holdout(offset: int) -> Holdout:
        hist = [[items[i - 1] for i in s[: len(s) - offset]] for s in seqs.values()]
        targets = [items[s[len(s) - offset] - 1] for s in seqs.values()]
        n = len(targets)
        return Holdout(hist, targets, np.array(list(seqs)), np.zeros(n, bool), np.zeros(n, bool))

    return {"items": items, "examples": examples, "val": holdout(2), "test": holdout(1)}


def run(data: dict, features, text_init: bool, args) -> dict:
    import torch

    from models.seqrec import SeqRecConfig, SeqRecModel
    from tasks.evaluate import metrics_from_ranks, target_ranks
    from tasks.train import fit, pick_device, set_seed, text_init_rows

    set_seed(args.seed)
    items, examples, val, test = data["items"], data["examples"], data["val"], data["test"]
    model = SeqRecModel(SeqRecConfig(n_items=len(items) + 1, max_len=args.max_len, hidden_size=args.hidden,
                                     num_layers=args.layers, num_heads=args.heads, dropout=args.dropout))  # fmt: skip
    if text_init:
        with torch.no_grad():
            model.item_emb.weight[1:] = text_init_rows(items, features, args.hidden, std=0.02)
    device = pick_device()
    best, best_state, best_epoch, curve, t0 = -1.0, None, 0, [], time.perf_counter()

    def validate(epoch: int) -> bool:
        nonlocal best, best_state, best_epoch
        if epoch % args.eval_every:
            return True
        v = metrics_from_ranks(target_ranks(model, items, val), 10)
        curve.append({"epoch": epoch, "val_ndcg@10": v["ndcg@10"], "seconds": round(time.perf_counter() - t0, 1)})
        print(f"  epoch {epoch:>4}  val NDCG@10 {v['ndcg@10']:.4f}  HR@10 {v['hr@10']:.4f}", flush=True)
        if v["ndcg@10"] > best:
            best, best_state, best_epoch = v["ndcg@10"], copy.deepcopy(model.state_dict()), epoch
            return True
        return epoch - best_epoch < args.patience * args.eval_every  # early stopping

    fit(model, examples, args.max_epochs, args.batch_size, args.lr, 0.0, args.seed, device, progress=False,
        schedule=args.lr_schedule, on_epoch=validate)  # fmt: skip
    train_seconds = time.perf_counter() - t0
    model.load_state_dict(best_state)
    t = metrics_from_ranks(target_ranks(model, items, test), 10)
    return {"text_init": text_init, "device": str(device), "best_epoch": best_epoch, "train_seconds":
            round(train_seconds, 1), "val_ndcg@10": best, "test_hr@10": t["hr@10"], "test_ndcg@10": t["ndcg@10"],
            "users": t["n"], "items": len(items), "curve": curve}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap, "ml-1m")
    ap.add_argument("--text-init", choices=["yes", "no", "both"], default="yes")
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-schedule", choices=["constant", "warmup_cosine"], default="constant")
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    import torch

    from tasks.common import git_commit

    events, items, name = load_data(args, need_items=False)
    features = features_for(args, items, name) if args.text_init != "no" else {}
    if args.text_init != "no" and not features:
        raise SystemExit("--text-init needs item features: give --dataset, or --items with --events, or --features")
    data = split(events, args.max_len)
    inits = {"yes": [True], "no": [False], "both": [True, False]}[args.text_init]
    runs = []
    for text_init in inits:
        print(f"text_init={text_init}", flush=True)
        runs.append(run(data, features, text_init, args))
    device = device_name()
    command = "python bench/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"command": command, "machine": {"device": device, "threads": torch.get_num_threads(),
                                              "torch": torch.__version__},
              "git_commit": git_commit(), "config": {k: v for k, v in vars(args).items() if k not in ("out",)},
              "runs": runs}  # fmt: skip
    report["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in report["config"].items()}
    print(f"{'text init':<10} {'HR@10':>7} {'NDCG@10':>8} {'best epoch':>10} {'train s':>8}  device")
    for r in runs:
        print(f"{r['text_init']!s:<10} {r['test_hr@10']:>7.4f} {r['test_ndcg@10']:>8.4f} {r['best_epoch']:>10} "
              f"{r['train_seconds']:>8.1f}  {r['device']}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
