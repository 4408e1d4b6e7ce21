"""Train: full training (bootstrap / decision `full`) or incremental fine-tuning from the champion.

Full: a fresh model on every event through day D (minus D's holdout), item embeddings
initialised from MiniLM text features. Incremental: warm start from the champion, the
item vocabulary grown for new items (their rows mapped from text into the trained
embedding space), trained on the users active on D plus a replay of the history: an epoch
over it (`replay: all`: older users, a sample or all of them, `replay_users`, each with its whole
history or only its latest window, `chunks`) or a bounded sample of its windows, O(day) (`recent`,
`users`, `uniform`: `replay_windows`), the windows that hold the day's events repeated
(`day_repeats`, `day_chunks`), under a fresh AdamW with warm-up and cosine decay, optionally moving
only some parameters (`all`, `top`, `lora`); in `train.processes` data-parallel processes under
torchrun (`run_distributed`). The default recipe (one epoch over every user's
history plus the day's events 5x, 3.5-4.7 % of a full retrain's compute) is the one
bench/replay.py measured at or above a daily full retrain; docs/BENCHMARKS.md has the comparison.
Loss: full softmax cross-entropy over the whole catalogue (SASRec+, Klenitskiy &
Vasilev 2023), the objective that tops the full-ranking tables in docs/anchors.md; a `Recipe` may
choose sampled softmax with logQ correction, length bucketing, torch.compile or bf16 instead
(bench/step_cost.py measures each). Training checkpoints and resumes (tasks/checkpoint.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.seqrec import CONFIG_FILE, WEIGHTS_FILE, SeqRecConfig, SeqRecModel
from tasks.checkpoint import Checkpointing, Position, fingerprint
from tasks.common import FreshrecError, Layout, atomic_dir, epoch_seconds, read_json, write_json
from tasks.history import (
    day_mask,
    holdout_mask,
    load_events,
    load_items,
    sequences,
    window_at,
    window_count,
    windows,
)
from tasks.params import step_cli
from tasks.units import MODEL_ITEMS_FILE, TRAIN_FILE, model_items

LOG = logging.getLogger(__name__)
TIMING_FILE = "timing.json"
CHECKPOINT_DIR = "checkpoint"
MODES = ("full", "incremental", "skip")
TRAINABLE = ("all", "top", "lora")
SCHEDULES = ("constant", "warmup_cosine")
REPEAT_LR_SCALE = 30.0  # the repeat weight's learning rate over the recipe's (param_groups)
LOSSES = ("full", "sampled")
BF16 = ("auto", "on", "off")


@dataclass(frozen=True)
class TrainResult:
    mode: str
    trainable: str
    device: str
    epochs: int
    steps: int
    examples: int
    seconds: float
    final_loss: float
    n_items: int
    new_items: int
    day: str


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # torchrun: one GPU a process
    return torch.device("cpu")


def numerics() -> dict:
    """What a CPU training's bits depend on besides its inputs, code and seed: the torch build, the
    instruction set its kernels dispatch to, and the intra-op thread count (a matmul's or a reduction's
    sums are split by thread, so 1 and 2 threads round differently). timing.json records it, the version's
    manifest carries it, and `reproduce` retrains at the recorded thread count."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def world() -> tuple[int, int]:
    """(rank, number of processes) of a `torchrun` launch (data-parallel training), else (0, 1)."""
    import torch.distributed as dist

    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def init_distributed() -> None:
    """Join the process group `torchrun` set up in the environment (NCCL on GPUs, gloo on CPUs); nothing
    without one. Every process trains on its share of each batch; the gradients are averaged (DDP)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def _text_matrix(item_ids: list[str], features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 384) text vectors and a bool mask of which items have one."""
    dim = next(iter(features.values())).shape[0]
    mat = torch.zeros(len(item_ids), dim)
    has = torch.zeros(len(item_ids), dtype=torch.bool)
    for i, item in enumerate(item_ids):
        if item in features:
            mat[i] = features[item]
            has[i] = True
    return mat, has


def init_origin(
    config: SeqRecConfig,
    seed: int,
    item_ids: list[str],
    features: dict[str, torch.Tensor],
    start_dir: Path | None = None,
    **more,
) -> str:
    """A stable id of what a run's starting weights are made from: the model config, the seed, the
    catalogue, the text vectors that initialise it, the warm start's files, and `more` (e.g. the
    trainable set). It stands in for the weights in a checkpoint's fingerprint: the text init's SVD and
    the new items' ridge map go through BLAS, whose last bits differ between CPUs and thread counts."""
    cfg = asdict(config)
    for key, default in (("block", "gpt2"), ("repeat_score", False)):  # defaults left out: checkpoints made
        if cfg[key] == default:  # before the option existed still resume
            del cfg[key]
    head = {"config": cfg, "seed": seed, "items": item_ids, "more": more}
    h = hashlib.sha256(json.dumps(head, sort_keys=True, default=str).encode())
    for item in item_ids:
        vec = features.get(item)
        if vec is not None:
            h.update(item.encode())
            h.update(vec.detach().cpu().contiguous().numpy().tobytes())
    if start_dir is not None:
        for name in (CONFIG_FILE, WEIGHTS_FILE, MODEL_ITEMS_FILE):
            h.update(name.encode())
            h.update((Path(start_dir) / name).read_bytes())
    return h.hexdigest()


def text_init_rows(item_ids: list[str], features: dict[str, torch.Tensor], hidden: int, std: float) -> torch.Tensor:
    """PCA of the items' text vectors down to `hidden` dims, scaled to the init std."""
    mat, has = _text_matrix(item_ids, features)
    rows = torch.randn(len(item_ids), hidden) * std
    if has.sum() > hidden:
        centred = mat[has] - mat[has].mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        proj = centred @ v[:hidden].T  # (n, hidden)
        rows[has] = proj / proj.std() * std
    return rows


def mapped_rows(
    new_ids: list[str], known_ids: list[str], known_rows: torch.Tensor, features: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Rows for new items: a ridge map text -> trained embedding, fitted on the known items."""
    std = known_rows.std().item()
    rows = torch.randn(len(new_ids), known_rows.shape[1]) * std
    if not features:
        return rows
    t_known, has_known = _text_matrix(known_ids, features)
    t_new, has_new = _text_matrix(new_ids, features)
    if has_known.sum() < 2 or not has_new.any():
        return rows
    x, y = t_known[has_known], known_rows[has_known].float()
    lam = 1e-2 * x.shape[0]
    w = torch.linalg.solve(x.T @ x + lam * torch.eye(x.shape[1]), x.T @ y)  # (384, H)
    rows[has_new] = t_new[has_new] @ w
    return rows


def _set_trainable(model: SeqRecModel, trainable: str, lora_rank: int) -> SeqRecModel | torch.nn.Module:
    if trainable == "all":
        return model
    if trainable not in TRAINABLE:
        raise FreshrecError(f"train.incremental.trainable={trainable!r}: use one of {TRAINABLE}")
    if trainable == "top":
        for p in model.parameters():
            p.requires_grad = False
        for mod in (model.item_emb, model.backbone.h[-1], model.backbone.ln_f):
            for p in mod.parameters():
                p.requires_grad = True
    else:
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=lora_rank,
            lora_alpha=2 * lora_rank,
            target_modules=["c_attn", "c_proj", "c_fc"],
            fan_in_fan_out=True,
            lora_dropout=0.0,
        )  # GPT-2 uses Conv1D: weights are (in, out)
        model.backbone = get_peft_model(model.backbone, cfg)
        model.item_emb.weight.requires_grad = True  # new items must still learn their rows
    if model.config.repeat_score:  # one scalar: learned under every trainable set
        model.repeat_weight.requires_grad = True
    return model


def _merge_lora(model: SeqRecModel) -> None:
    if hasattr(model.backbone, "merge_and_unload"):
        model.backbone = model.backbone.merge_and_unload()


def lr_lambda(schedule: str, total_steps: int, warmup_frac: float = 0.1):
    """Multiplier on the base learning rate per step: `constant`, or `warmup_cosine` (linear
    warm-up over the first `warmup_frac` of the steps, then cosine decay to zero)."""
    if schedule == "constant":
        return lambda step: 1.0
    if schedule != "warmup_cosine":
        raise FreshrecError(f"lr_schedule={schedule!r}: use one of {SCHEDULES}")
    warm = max(1, round(warmup_frac * total_steps))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        rest = max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / rest)))

    return f


@dataclass(frozen=True)
class Recipe:
    """How to train: optimisation, loss and the step's execution (params.yaml train.full / incremental).

    loss       `full`: softmax cross-entropy over the whole catalogue (SASRec+); `sampled`: softmax
               over the target and `negatives` items drawn by popularity per step, shared by the batch,
               with the logQ correction (logit - log expected count) and accidental hits masked: the
               loss eSASRec and HSTU train with, O(negatives) instead of O(catalogue) per position
    bucketing  batches of similar length (sorted within shuffled pools of 50 batches), cut to their
               longest sequence: less padding for the same examples and updates
    compile    torch.compile the model (inductor)
    bf16       `auto` (on CUDA), `on`, `off`: bfloat16 autocast
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    schedule: str = "constant"
    loss: str = "full"
    negatives: int = 256
    logq: bool = True
    bucketing: bool = False
    compile: bool = False
    bf16: str = "auto"

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise FreshrecError(f"lr_schedule={self.schedule!r}: use one of {SCHEDULES}")
        if self.loss not in LOSSES:
            raise FreshrecError(f"train loss={self.loss!r}: use one of {LOSSES}")
        if self.loss == "sampled" and (not isinstance(self.negatives, int) or self.negatives < 1):
            raise FreshrecError(f"train negatives={self.negatives!r}: use a count >= 1 with loss: sampled")
        if self.bf16 not in BF16:
            raise FreshrecError(f"train bf16={self.bf16!r}: use one of {BF16}")

    @classmethod
    def from_section(cls, cfg: dict, **override) -> Recipe:
        """A params.yaml train.full / train.incremental section (unknown keys belong to the data recipe)."""
        names = {f.name for f in fields(cls)} - {"schedule"}  # the section calls it lr_schedule
        kw = {k: v for k, v in cfg.items() if k in names}
        if "lr_schedule" in cfg:
            kw["schedule"] = cfg["lr_schedule"]
        return cls(**(kw | override))


def _bf16(recipe: Recipe, device: torch.device) -> bool:
    return recipe.bf16 == "on" or (recipe.bf16 == "auto" and device.type == "cuda")


def epoch_order(lengths: torch.Tensor, batch_size: int, bucketing: bool, gen: torch.Generator) -> torch.Tensor:
    """The epoch's example order; batches are its consecutive `batch_size` slices. Bucketing sorts
    each shuffled pool of 50 batches by length and shuffles the full batches (a short one stays last)."""
    perm = torch.randperm(len(lengths), generator=gen)
    if not bucketing:
        return perm
    pool = 50 * batch_size
    chunks = []
    for start in range(0, len(perm), pool):
        part = perm[start : start + pool]
        part = part[torch.argsort(lengths[part], stable=True)]
        chunks += list(part.split(batch_size))
    tail = [c for c in chunks if len(c) < batch_size]
    full = [c for c in chunks if len(c) == batch_size]
    full = [full[i] for i in torch.randperm(len(full), generator=gen).tolist()]
    return torch.cat(full + tail)


def popularity(targets: torch.Tensor, n_items: int) -> torch.Tensor:
    """Sampling distribution over item columns 0..N-2 (item i is column i - 1): target counts + 1."""
    counts = torch.bincount(targets[targets != 0] - 1, minlength=n_items - 1).double() + 1.0
    return counts / counts.sum()


def sampled_softmax(model, states, y, q, negatives: int, logq: bool, gen: torch.Generator, prefix=None) -> torch.Tensor:
    """Cross-entropy over [target, `negatives` shared popularity-sampled items] per position; `prefix`
    (M, T), the items each position has seen (SeqRecModel.seen_prefix), with `repeat_score`."""
    neg = torch.multinomial(q, negatives, replacement=True, generator=gen).to(states.device)  # (S,) columns
    emb = model.item_emb.weight[1:]
    pos_logit = (states * emb[y - 1]).sum(-1, keepdim=True).float()  # (M, 1)
    neg_logit = (states @ emb[neg].T).float()  # (M, S)
    if prefix is not None:  # column c here is item c + 1
        pos_logit = model.add_repeat_score(pos_logit, (prefix == y.unsqueeze(1)).any(1, keepdim=True))
        neg_logit = model.add_repeat_score(neg_logit, model.seen_mask(prefix, items=neg + 1), inplace=True)
    if logq:
        log_expected = torch.log(q.to(states.device).float() * negatives)
        pos_logit = pos_logit - log_expected[y - 1].unsqueeze(1)
        neg_logit = neg_logit - log_expected[neg]
    neg_logit = neg_logit.masked_fill((y - 1).unsqueeze(1) == neg.unsqueeze(0), float("-inf"))  # accidental hits
    logits = torch.cat([pos_logit, neg_logit], dim=1)
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long, device=states.device))


def param_groups(model: SeqRecModel, params: list[torch.nn.Parameter], recipe: Recipe) -> list[dict]:
    """AdamW's groups: everything at the recipe's rate, except the repeat weight (one scalar that must
    travel several logits' worth, where Adam moves a parameter about one lr a step): REPEAT_LR_SCALE
    times faster and never decayed."""
    rw = getattr(model, "repeat_weight", None)
    groups = [{"params": [p for p in params if p is not rw]}]
    if rw is not None and any(p is rw for p in params):
        groups.append({"params": [rw], "lr": recipe.lr * REPEAT_LR_SCALE, "weight_decay": 0.0})
    return groups


def fit(
    model: SeqRecModel,
    examples: list[tuple[np.ndarray, np.ndarray]],
    recipe: Recipe,
    seed: int,
    device: torch.device,
    progress: bool = True,
    on_epoch: Callable[[int], bool] | None = None,
    checkpointing: Checkpointing | None = None,
    origin: str | None = None,
) -> tuple[int, float]:
    """Next-item training; returns (steps, last epoch's mean loss).

    `on_epoch(epoch)` (1-based) runs after each epoch with the model in eval mode; returning False
    stops training early (one optimizer and one schedule span the whole run). With `checkpointing`
    the run saves itself every few minutes and resumes from its own last checkpoint (tasks/checkpoint.py);
    `origin` (init_origin) names the starting weights in the checkpoint's fingerprint, so a run resumes on
    a machine whose init rounds differently (without it the weights' bits are the starting point).
    `progress` logs loss and speed at INFO about every 30 s and after every epoch.
    """
    inputs = torch.from_numpy(np.stack([e[0] for e in examples]))
    targets = torch.from_numpy(np.stack([e[1] for e in examples]))
    lengths = (inputs != 0).sum(1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(param_groups(model, params, recipe), lr=recipe.lr, weight_decay=recipe.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    q = popularity(targets, model.config.n_items) if recipe.loss == "sampled" else None
    use_bf16 = _bf16(recipe, device)
    n_batches = (len(inputs) + recipe.batch_size - 1) // recipe.batch_size
    total_steps = recipe.epochs * n_batches
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(recipe.schedule, total_steps))
    pos = None
    if checkpointing is not None:
        # the repeat weight's own rate is part of the recipe (named only where there is one: older runs resume)
        knobs = {"repeat_lr_scale": REPEAT_LR_SCALE} if model.config.repeat_score else {}
        checkpointing.fingerprint = fingerprint(
            asdict(recipe) | {"seed": seed} | knobs, [inputs.numpy(), targets.numpy()],
            model if origin is None else origin,
        )  # fmt: skip
        pos = checkpointing.restore(model, opt, sched, gen)
    model.to(device).train()
    rank, procs = world()
    forward = model
    if procs > 1:  # data-parallel: the same batches in every process, each its share; gradients averaged
        # static graph: the same parameters take part in every step, GPT-2's unused token table included
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True
        )
    forward = torch.compile(forward) if recipe.compile else forward
    steps, epoch_loss = (pos.steps, float("nan")) if pos else (0, float("nan"))
    first_epoch = pos.epoch if pos else 1
    t_start, t_log, steps_at_start = time.monotonic(), time.monotonic(), steps
    for epoch in range(first_epoch, recipe.epochs + 1):
        if pos is not None and epoch == pos.epoch:
            order, first_batch, total, count = pos.order, pos.batch, pos.loss_total, pos.loss_count
        else:
            order = epoch_order(lengths, recipe.batch_size, recipe.bucketing, gen)
            first_batch, total, count = 0, 0.0, 0
        for b in range(first_batch, n_batches):
            sel = order[b * recipe.batch_size : (b + 1) * recipe.batch_size]
            if procs > 1 and len(sel) >= procs:  # a last batch smaller than the group is every process's
                sel = sel[rank::procs]
            width = int(lengths[sel].max()) if recipe.bucketing else inputs.shape[1]
            x, y = inputs[sel, -width:].to(device), targets[sel, -width:].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                states = forward(x)  # (B, T, H)
                keep = y != 0
                prefix = model.seen_prefix(x, keep) if model.config.repeat_score else None  # (M, T)
                if recipe.loss == "full":
                    logits = model.item_logits(states[keep]).float()  # (M, N - 1) only real target positions
                    if prefix is not None:
                        logits = model.add_prefix_repeat_score(logits, prefix)
                    loss = torch.nn.functional.cross_entropy(logits, y[keep] - 1)  # item i is column i - 1
                else:
                    loss = sampled_softmax(model, states[keep], y[keep], q, recipe.negatives, recipe.logq, gen, prefix)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            with torch.no_grad():
                model.item_emb.weight[0].zero_()
            total += loss.item()
            count += 1
            steps += 1
            if progress and time.monotonic() - t_log >= 30:
                t_log = time.monotonic()
                rate = (t_log - t_start) / max(steps - steps_at_start, 1)
                left = rate * (total_steps - steps)
                LOG.info("training: epoch %d/%d, batch %d/%d, loss %.4f, %.2f s/step, about %.0f s left",
                         epoch, recipe.epochs, b + 1, n_batches, total / count, rate, left)  # fmt: skip
            if checkpointing is not None and rank == 0 and checkpointing.due():  # one writer
                checkpointing.save(model, opt, sched, gen, Position(epoch, b + 1, steps, order, total, count))
        epoch_loss = total / max(count, 1)
        if procs > 1:  # the group's mean: what one process training on whole batches reports
            mean = torch.tensor([epoch_loss], dtype=torch.float64)
            torch.distributed.all_reduce(mean)
            epoch_loss = mean.item() / procs
        if progress:
            LOG.info("training: epoch %d/%d done, mean loss %.4f (step %d)", epoch, recipe.epochs, epoch_loss, steps)
        if on_epoch is not None:
            model.eval()
            go_on = on_epoch(epoch)
            model.train()
            if not go_on:
                break
    model.eval()
    return steps, epoch_loss


REPLAY = ("all", "recent", "uniform", "users")


def replay_windows(
    seqs: dict[str, np.ndarray],
    skip: dict[str, int],
    policy: str,
    budget: int,
    max_len: int,
    rng: random.Random,
    last_seen: dict[str, int] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`budget` windows of the history, drawn by `policy` (the day's own windows, the `skip[user]` newest of
    each day user's, are never drawn):

    recent   the newest window of the users last active most recently (`last_seen`: a rank or timestamp)
    users    the newest window of users drawn uniformly (each user equally likely, whatever its history)
    uniform  windows drawn uniformly from every window of the history (each past event equally likely to be
             replayed: a reservoir over the history, drawn afresh each day)
    """
    if budget <= 0:
        return []
    if policy == "uniform":
        users = sorted(seqs)
        counts = np.array([window_count(len(seqs[u]), max_len) - skip.get(u, 0) for u in users]).clip(min=0)
        total = int(counts.sum())
        if not total:
            return []
        ends = np.cumsum(counts)
        picks = sorted(rng.sample(range(total), min(budget, total)))
        out = []
        for pick in picks:
            i = int(np.searchsorted(ends, pick, side="right"))
            k = skip.get(users[i], 0) + pick - (int(ends[i - 1]) if i else 0)
            out.append(window_at(seqs[users[i]], max_len, k))
        return out
    others = [u for u in sorted(seqs) if u not in skip and len(seqs[u]) >= 2]
    if policy == "recent":
        seen = last_seen or {}
        chosen = sorted(others, key=lambda u: (-seen.get(u, -1), u))[:budget]
    elif policy == "users":
        chosen = rng.sample(others, min(budget, len(others)))
    else:
        raise FreshrecError(f"train.incremental.replay={policy!r}: use one of {REPLAY}")
    return [window_at(seqs[u], max_len, 0) for u in chosen]


def incremental_examples(
    seqs: dict[str, np.ndarray],
    day_users: dict[str, int],
    cfg: dict,
    max_len: int,
    seed: str,
    last_seen: dict[str, int] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The day's training sequences: the day's users (user -> events on the day) and a replay of the history.

    `replay: all` (the cost of an epoch over the history): the day's users plus `replay_users` older users
    (a count or `all`), each contributing its most recent window (`chunks: last`) or its whole history
    (`all`); then `day_repeats - 1` more copies of each day user's newest window (`day_chunks: last`) or of
    every window that holds one of its day's events (`day`), so that the newest data weighs more.

    A bounded replay (`recent`, `users`, `uniform`: `replay_windows`) costs what the day holds: the windows
    that hold the day's events (`day_chunks`), `day_repeats` times, plus `replay_ratio` x as many windows of
    the history drawn by the policy (at least `replay_min`), whatever the history's length."""
    day_chunks, repeats = cfg["day_chunks"], cfg["day_repeats"]  # typed: tasks/params.py
    empty = np.zeros(0, np.int64)
    rng = random.Random(seed)
    own: dict[str, list] = {}
    for user in sorted(day_users):  # newest windows first: the day's events are the latest targets
        n_win = 1 if day_chunks == "last" else max(1, math.ceil(day_users[user] / max_len))
        own[user] = windows(seqs.get(user, empty), max_len, all_chunks=n_win > 1)[:n_win]
    if cfg["replay"] != "all":
        day = [w for user in sorted(own) for w in own[user]]
        budget = max(math.ceil(cfg["replay_ratio"] * len(day)), cfg["replay_min"])
        skip = {user: len(own[user]) for user in own}
        return day * repeats + replay_windows(seqs, skip, cfg["replay"], budget, max_len, rng, last_seen)
    chunks = cfg["chunks"]
    others = sorted(u for u in seqs if u not in day_users)
    n_replay = cfg["replay_users"]
    replay = others if n_replay == "all" else rng.sample(others, min(n_replay, len(others)))
    examples: list[tuple[np.ndarray, np.ndarray]] = []
    for user in sorted(day_users) + replay:
        examples += windows(seqs.get(user, empty), max_len, all_chunks=chunks == "all")
    for user in sorted(day_users):
        examples += own[user] * (repeats - 1)
    return examples


def _note_attempt(extra: dict, here: dict) -> None:
    """Before a checkpoint is saved: this attempt's numerics join those of the attempts it resumed from."""
    seen = extra.setdefault("numerics", [])
    if here not in seen:
        seen.append(here)


def _write_report(out: Path, res: TrainResult, attempts: list[dict] | None = None) -> None:
    """train.json (published with the model) holds results only, so retraining the same day gives the
    same bytes; the wall time and the machine's numerics (`numerics`) go to timing.json, which stays with
    the run and goes into the version's manifest, with `earlier_attempts`: of the `attempts` that
    checkpointed, those with numerics other than this one's (a run killed on one worker and resumed on
    another with other cores)."""
    report = asdict(res)
    here = numerics()
    earlier = [a for a in attempts or [] if a != here]
    timing = {"seconds": report.pop("seconds"), "device": res.device, **here}
    write_json(out / TIMING_FILE, timing | ({"earlier_attempts": earlier} if earlier else {}))
    write_json(out / TRAIN_FILE, report)


def train(
    events: pd.DataFrame,
    catalogue: pd.DataFrame,
    day: dt.date,
    mode: str,
    params: dict,
    features: dict[str, torch.Tensor],
    champion_dir: Path | None,
    out_dir: Path,
    holdout_fraction: float,
    progress: bool = True,
    checkpoint_dir: Path | None = None,
    on_checkpoint: Callable[[Path], None] | None = None,
) -> TrainResult:
    """Train the challenger for `day` and save it to `out_dir` (atomically).

    With `checkpoint_dir`, training checkpoints there every `train.checkpoint_seconds` (and calls
    `on_checkpoint`), resumes from a checkpoint of the same run, and clears it once the model is saved."""
    if mode not in MODES:
        raise FreshrecError(f"unknown training mode {mode!r}: use one of {MODES}")
    if mode in ("incremental", "skip") and champion_dir is None:
        raise FreshrecError(f"mode {mode!r} needs a champion, and none was pulled: use mode 'full' to bootstrap")
    t0 = time.perf_counter()
    device = pick_device()
    set_seed(params["seed"])
    if mode == "skip":  # nothing worth learning: the challenger is the champion, byte for byte
        with atomic_dir(out_dir) as tmp:
            shutil.copytree(champion_dir, tmp, dirs_exist_ok=True)
            res = TrainResult(
                "skip", "none", str(device), 0, 0, 0, 0.0, float("nan"), len(model_items(champion_dir)) + 1, 0, str(day)
            )
            _write_report(tmp, res)
        return res

    train_events = events[~holdout_mask(events, day, holdout_fraction)]
    known_items = list(dict.fromkeys(catalogue["item_id"].tolist() + train_events["item_id"].tolist()))
    hidden = params["hidden_size"]
    text_init = params["text_init"] and bool(features)
    if mode == "full":
        cfg_section, trainable = params["full"], "all"
        item_ids = known_items
        model = SeqRecModel(
            SeqRecConfig(
                n_items=len(item_ids) + 1,
                max_len=params["max_len"],
                hidden_size=hidden,
                num_layers=params["num_layers"],
                num_heads=params["num_heads"],
                dropout=params["dropout"],
                block=params["block"],
                repeat_score=params["repeat_score"],
            )
        )
        if text_init:
            with torch.no_grad():
                model.item_emb.weight[1:] = text_init_rows(item_ids, features, hidden, std=0.02)
        new_items = len(item_ids)
        users = None
    else:
        cfg_section, trainable = params["incremental"], params["incremental"]["trainable"]
        model = SeqRecModel.load(champion_dir)
        if params["repeat_score"] != model.config.repeat_score:  # the model's shape is the champion's
            LOG.warning("train.repeat_score is %s but the champion was trained with repeat_score %s: incremental "
                        "training keeps the champion's; the next full retrain applies the setting",
                        params["repeat_score"], model.config.repeat_score)  # fmt: skip
        old_ids = model_items(champion_dir)
        old_set = set(old_ids)
        new_ids = [i for i in known_items if i not in old_set]
        init = mapped_rows(new_ids, old_ids, model.item_emb.weight.data[1:], features if text_init else {})
        model.grow_items(len(new_ids), init)
        item_ids = old_ids + new_ids
        new_items = len(new_ids)
        users = train_events.loc[day_mask(train_events, day), "user_id"].value_counts().to_dict()
    index = {item: i + 1 for i, item in enumerate(item_ids)}
    seqs = sequences(train_events, index)
    examples: list[tuple[np.ndarray, np.ndarray]] = []
    if users is None:
        for seq in seqs.values():
            examples += windows(seq, model.config.max_len, all_chunks=True)
    else:
        last_seen = None
        if cfg_section["replay"] == "recent":  # each user's last event, in epoch seconds
            last = train_events.groupby("user_id")["event_ts"].max()
            last_seen = dict(zip(last.index, epoch_seconds(last).tolist(), strict=True))
        examples = incremental_examples(
            seqs, users, cfg_section, model.config.max_len, f"{params['seed']}-{day}", last_seen
        )
    if not examples:
        raise FreshrecError(f"no training sequences for {day} (mode {mode}): is the day's partition empty?")
    LOG.info("train %s: mode %s (%s), %d sequences of up to %d items, %d items (%d new), %d epochs on %s",
             day, mode, trainable, len(examples), model.config.max_len, len(item_ids), new_items,
             cfg_section["epochs"], device)  # fmt: skip
    lora_rank = params["incremental"]["lora_rank"]  # used by trainable: lora (incremental) only
    checkpointing, origin = None, None
    if checkpoint_dir is not None:  # the origin names the run only for its checkpoints (replays train without)
        checkpointing = Checkpointing(checkpoint_dir, params["checkpoint_seconds"], on_checkpoint)
        here = numerics()  # each attempt that checkpointed leaves its numerics in the checkpoint it resumes from
        checkpointing.before_save = lambda: _note_attempt(checkpointing.extra, here)
        origin = init_origin(
            model.config,
            params["seed"],
            item_ids,
            features if text_init else {},
            champion_dir if mode == "incremental" else None,
            trainable=trainable,
            lora_rank=lora_rank,
        )
    _set_trainable(model, trainable, lora_rank)
    steps, loss = fit(
        model,
        examples,
        Recipe.from_section(cfg_section),
        params["seed"],
        device,
        progress,
        checkpointing=checkpointing,
        origin=origin,
    )
    _merge_lora(model)
    model.to("cpu")
    res = TrainResult(
        mode,
        trainable,
        str(device),
        cfg_section["epochs"],
        steps,
        len(examples),
        round(time.perf_counter() - t0, 3),
        round(loss, 5),
        len(item_ids) + 1,
        new_items,
        str(day),
    )
    if world()[0] != 0:  # data-parallel: the first process writes the model (every process holds the same)
        return res
    with atomic_dir(out_dir) as tmp:
        model.save(tmp)
        (tmp / MODEL_ITEMS_FILE).write_text(json.dumps(item_ids))
        _write_report(tmp, res, checkpointing.extra.get("numerics") if checkpointing is not None else None)
    if checkpointing is not None:
        checkpointing.clear()
    LOG.info("trained %s (%s) on %d sequences in %.1fs, loss %.3f", mode, trainable, len(examples), res.seconds, loss)
    return res


def run(
    day: dt.date,
    params: dict,
    layout: Layout,
    mode: str | None = None,
    progress: bool = True,
    on_checkpoint: Callable[[Path], None] | None = None,
) -> TrainResult:
    """Train day D's challenger: mode from the drift report unless given; full if there is no champion.

    Training checkpoints into runs/date=D/checkpoint (`on_checkpoint` shares each one, e.g. to the
    object store) and a killed run resumes from there."""
    champion = layout.run(day) / "champion"
    champion_dir = champion if (champion / MODEL_ITEMS_FILE).exists() else None
    mode = mode or read_json(layout.reports("drift", day) / "drift.json")["decision"]
    if champion_dir is None and mode != "full":
        LOG.info("no champion yet: bootstrapping with a full training run")
        mode = "full"
    from tasks.features import update_features

    catalogue = load_items(layout, day)
    features = (
        update_features(catalogue, layout.features(), params["features"]["batch_size"])
        if params["train"]["text_init"]
        else {}
    )
    return train(
        load_events(layout, day),
        catalogue,
        day,
        mode,
        params["train"],
        features,
        champion_dir,
        layout.run(day) / "challenger",
        params["evaluate"]["holdout_fraction"],
        progress,
        layout.run(day) / CHECKPOINT_DIR,
        on_checkpoint,
    )


def run_distributed(day: dt.date, params: dict, layout: Layout, mode: str | None = None) -> TrainResult:
    """`run` in `train.processes` data-parallel processes on this worker: `torchrun --standalone` of this
    module's CLI over the same data root and the day's params (one process per GPU; gloo on CPUs)."""
    import subprocess
    import sys
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory(prefix="freshrec-ddp-") as tmp:
        params_file = Path(tmp) / "params.yaml"
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(params["train"]["processes"]), "-m", "tasks.train",
               "--date", str(day), "--params", str(params_file), *(["--mode", mode] if mode else [])]  # fmt: skip
        LOG.info("training %s in %d data-parallel processes: %s", day, params["train"]["processes"], " ".join(cmd))
        env = os.environ | {"FRESHREC_DATA": str(layout.root), "FRESHREC_PARAMS": str(params_file)}
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise FreshrecError(f"data-parallel training of {day} failed (exit {res.returncode}): {res.stderr[-2000:]}")
    report = [line for line in res.stdout.splitlines() if line.startswith("{")]
    return TrainResult(**json.loads(report[-1]))


def main(argv: list[str] | None = None) -> None:
    def options(ap):
        ap.add_argument("--mode", choices=MODES, help="override the drift decision")

    args, params, day = step_cli(__doc__, argv, options)
    init_distributed()  # under `torchrun --nproc_per_node N -m tasks.train`: N data-parallel processes
    res = run(day, params, Layout.default(), args.mode, progress=world()[0] == 0)
    if world()[0] == 0:
        print(json.dumps(asdict(res)))


if __name__ == "__main__":
    main()
