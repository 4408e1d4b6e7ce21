"""Offline quality on MovieLens-1M, the protocol of docs/anchors.md: leave-one-out per user
(last item = test, the one before = validation), FULL ranking over all 3,706 items, HR@10 and
NDCG@10 averaged over users. The pipeline's own model (models.seqrec), training loop
(tasks.train.fit, full-softmax cross-entropy) and ranking code (tasks.evaluate.target_ranks).

    python bench/quality.py --hidden 128 --layers 3 --heads 4 --dropout 0.3 \
        --out bench/results/quality_ml1m_h128l3.json                            # a GPU worker: minutes
    python bench/quality.py --text-init both ...                                # MiniLM vs random init

One optimizer and one learning-rate schedule span the run; validation NDCG@10 is checked every
--eval-every epochs and training stops after --patience checks without improvement; the test
figures are those of the best validation checkpoint.

Resumable: the run checkpoints every --checkpoint-seconds (training state, the validation curve,
the best weights so far) into --checkpoint-dir; the same command, run again after a kill, picks up
where it stopped, with any thread count. A changed option refuses to start over that checkpoint:
give another --out (or --checkpoint-dir), or move the old checkpoint away. A run's `sittings` lists
the commit, device and threads of each sitting that trained it; the report's `machine` and
`git_commit` are the last sitting's.

    python bench/quality.py --hidden 128 --layers 3 --heads 4 --dropout 0.3 --lr-schedule warmup_cosine \
        --max-epochs 100 --loss sampled --negatives 256 --bucketing \
        --out bench/results/quality_ml1m_cpu_sampled.json                       # this 2-core CPU: hours

bench/results/quality_ml1m.json is the record of the runs docs/BENCHMARKS.md quotes, each with its
command, machine and commit; a run writes its own --out and is added to the record.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchdata import ROOT, add_data_args, device_name, features_for, load_data


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


def model_config(args, n_items: int):
    from models.seqrec import SeqRecConfig

    return SeqRecConfig(n_items=n_items + 1, max_len=args.max_len, hidden_size=args.hidden, num_layers=args.layers,
                        num_heads=args.heads, dropout=args.dropout, block=args.block,
                        repeat_score=args.repeat_score)  # fmt: skip


def this_sitting() -> dict:
    """The commit, device and threads a run trains under now (one entry of a report's `sittings`)."""
    import torch

    from tasks.common import git_commit

    return {"git_commit": git_commit(), "device": device_name(), "threads": torch.get_num_threads()}


def recipe_of(args):
    from tasks.train import Recipe

    return Recipe(args.max_epochs, args.batch_size, args.lr, schedule=args.lr_schedule, loss=args.loss,
                  negatives=args.negatives, logq=not args.no_logq, bucketing=args.bucketing,
                  compile=args.compile, bf16=args.bf16)  # fmt: skip


def run(data: dict, features, text_init: bool, args, sitting: dict):
    """Train with early stopping on validation NDCG@10; resumable: the curve, the best weights and the
    training state are in one checkpoint (tasks/checkpoint.py), so a killed run picks up where it was.
    `sitting` (commit, device, threads) goes into the checkpoint's list of the sittings that trained it.
    Returns (its checkpointing, its figures): the caller clears the checkpoint once the report is written."""
    import torch

    from models.seqrec import SeqRecModel
    from tasks.checkpoint import Checkpointing
    from tasks.evaluate import metrics_from_ranks, ranks_by_exclusion, target_ranks
    from tasks.train import fit, init_origin, pick_device, set_seed, text_init_rows

    set_seed(args.seed)
    items, examples, val, test = data["items"], data["examples"], data["val"], data["test"]
    model = SeqRecModel(model_config(args, len(items)))
    if text_init:
        with torch.no_grad():
            model.item_emb.weight[1:] = text_init_rows(items, features, args.hidden, std=0.02)
    if args.attn != "sdpa":
        model.backbone.set_attn_implementation(args.attn)
    device = pick_device()
    origin = init_origin(model.config, args.seed, items, features if text_init else {}, attn=args.attn)
    # hours of progress: a changed option refuses to run over them instead of starting over
    ckpt = Checkpointing(args.checkpoint_dir / f"text_init-{text_init}", args.checkpoint_seconds, refuse_foreign=True)
    ckpt.extra = {"best": -1.0, "best_epoch": 0, "curve": [], "seconds": 0.0, "sittings": []}
    t0, before = time.perf_counter(), []  # before: the seconds of earlier sittings (read from the checkpoint)

    def elapsed() -> float:
        if not before:
            before.append(ckpt.extra["seconds"])
        return before[0] + time.perf_counter() - t0

    def keep_time() -> None:  # and which commit and machine trained since: a run may span several
        ckpt.extra["seconds"] = round(elapsed(), 1)
        sittings = ckpt.extra.setdefault("sittings", [])  # absent from checkpoints older than this list
        if sittings[-1:] != [sitting]:
            sittings.append(sitting)

    ckpt.before_save = keep_time

    def validate(epoch: int) -> bool:
        st = ckpt.extra  # restored with the checkpoint on a resume
        if epoch % args.eval_every:
            return True
        v = metrics_from_ranks(target_ranks(model, items, val), 10)
        point = {"epoch": epoch, "val_ndcg@10": v["ndcg@10"], "seconds": round(elapsed(), 1)}
        if model.config.repeat_score:
            point["repeat_weight"] = round(model.repeat_weight.item(), 4)
        st["curve"].append(point)
        print(
            f"  epoch {epoch:>4}  val NDCG@10 {v['ndcg@10']:.4f}  HR@10 {v['hr@10']:.4f}  {elapsed():.0f} s"
            + (f"  repeat weight {point['repeat_weight']:.3f}" if "repeat_weight" in point else ""),
            flush=True,
        )
        if v["ndcg@10"] > st["best"]:
            st["best"], st["best_epoch"] = v["ndcg@10"], epoch
            ckpt.extra_tensors = {f"best.{k}": t.detach().cpu().clone() for k, t in model.state_dict().items()}
            return True
        return epoch - st["best_epoch"] < args.patience * args.eval_every  # early stopping

    fit(model, examples, recipe_of(args), args.seed, device, progress=True, on_epoch=validate, checkpointing=ckpt,
        origin=origin)  # fmt: skip
    keep_time()
    train_seconds = elapsed()
    st = ckpt.extra
    model.load_state_dict({k[5:]: v for k, v in ckpt.extra_tensors.items()})
    # one pass, three rankings: as docs/anchors.md writes it, under the "filter seen" protocol of the published
    # figures (docs/BENCHMARKS.md), and with only its input window's items out (what the served graph sees)
    ranks = ranks_by_exclusion(model, items, test, ("nothing", "history", "window"))
    t, f, w = (metrics_from_ranks(ranks[e], 10) for e in ("nothing", "history", "window"))
    return ckpt, {"text_init": text_init, "device": str(device), "best_epoch": st["best_epoch"], "train_seconds":
            round(train_seconds, 1), "val_ndcg@10": st["best"], "test_hr@10": t["hr@10"], "test_ndcg@10":
            t["ndcg@10"], "test_seen_excluded": {"hr@10": f["hr@10"], "ndcg@10": f["ndcg@10"]},
            "test_window_excluded": {"hr@10": w["hr@10"], "ndcg@10": w["ndcg@10"]}, "users": t["n"],
            "items": len(items), "curve": st["curve"], "sittings": st["sittings"]} | (
            {"repeat_weight": round(model.repeat_weight.item(), 4)} if model.config.repeat_score else {})  # fmt: skip


def add_args(ap) -> None:
    """The model and training options (bench/step_cost.py reuses them)."""
    ap.add_argument("--text-init", choices=["yes", "no", "both"], default="yes")
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--block", choices=["gpt2", "ligr"], default="gpt2", help="transformer block (models/seqrec.py)")
    ap.add_argument(
        "--repeat-score", action="store_true", help="learn a score for items already in the window (models/seqrec.py)"
    )
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-schedule", choices=["constant", "warmup_cosine"], default="constant")
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--loss", choices=["full", "sampled"], default="full")
    ap.add_argument("--negatives", type=int, default=256, help="with --loss sampled")
    ap.add_argument("--no-logq", action="store_true", help="with --loss sampled: no popularity correction")
    ap.add_argument("--bucketing", action="store_true", help="batches of similar length, cut to their longest")
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa", help="attention kernel")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--checkpoint-dir", type=Path, help="default .run/quality/<out name>: rerun to resume")
    ap.add_argument("--checkpoint-seconds", type=float, default=300.0)
    ap.add_argument("--out", type=Path, required=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap, "ml-1m")
    add_args(ap)
    args = ap.parse_args(argv)
    import logging

    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.checkpoint_dir = args.checkpoint_dir or ROOT / ".run" / "quality" / args.out.stem

    from tasks.checkpoint import ForeignCheckpoint
    from tasks.common import write_json

    events, items, name = load_data(args, need_items=False)
    features = features_for(args, items, name) if args.text_init != "no" else {}
    if args.text_init != "no" and not features:
        raise SystemExit("--text-init needs item features: give --dataset, or --items with --events, or --features")
    data = split(events, args.max_len)
    inits = {"yes": [True], "no": [False], "both": [True, False]}[args.text_init]
    runs, checkpoints = [], []
    sitting = this_sitting()
    for text_init in inits:
        print(f"text_init={text_init}", flush=True)
        try:
            ckpt, figures = run(data, features, text_init, args, sitting)
        except ForeignCheckpoint as exc:
            raise SystemExit(str(exc)) from None
        checkpoints.append(ckpt)
        runs.append(figures)
    command = "python bench/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"command": command, "machine": {"device": sitting["device"], "threads": sitting["threads"],
                                              "torch": torch.__version__},
              "git_commit": sitting["git_commit"], "config": {k: v for k, v in vars(args).items() if k not in ("out",)},
              "runs": runs}  # fmt: skip
    report["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in report["config"].items()}
    print(f"{'':<10} {'nothing excluded':>16} {'window excluded':>16} {'seen excluded':>16}")
    print(f"{'text init':<10} {'HR@10 NDCG@10':>16} {'HR@10 NDCG@10':>16} {'HR@10 NDCG@10':>16} "
          f"{'best epoch':>10} {'train s':>8}  device")  # fmt: skip
    for r in runs:
        f, w = r["test_seen_excluded"], r["test_window_excluded"]
        print(f"{r['text_init']!s:<10} {r['test_hr@10']:>7.4f} {r['test_ndcg@10']:>8.4f} {w['hr@10']:>7.4f} "
              f"{w['ndcg@10']:>8.4f} {f['hr@10']:>7.4f} {f['ndcg@10']:>8.4f} {r['best_epoch']:>10} "
              f"{r['train_seconds']:>8.1f}  {r['device']}")  # fmt: skip
    write_json(args.out, report)  # atomically; only then the checkpoints go: a kill before it loses no run
    for ckpt in checkpoints:
        ckpt.clear()
    return report


if __name__ == "__main__":
    main()
