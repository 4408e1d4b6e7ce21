"""Resumable training: one atomic file holds everything a run needs to go on as if it never stopped.

    <dir>/checkpoint.safetensors
        tensors   model.<name>            the weights
                  optim.<i>.<name>        the optimizer's per-parameter state (AdamW moments, step)
                  rng.torch, rng.cuda.<i> the global RNG streams (dropout), rng.order (batch order, negatives)
                  epoch.order             this epoch's batch order
                  extra.<name>            the caller's tensors (e.g. bench/quality.py's best weights)
        metadata  "freshrec": JSON        fingerprint, epoch, next batch, steps, running loss, optimizer
                                          param groups, scheduler state, the caller's JSON state

No pickle: safetensors and JSON only. The file is written under a temporary name in the same folder,
fsynced, and renamed over the old one: a kill at any instant leaves the previous checkpoint or the
new one, never a torn file. A checkpoint carries the fingerprint of its run (hyper-parameters, the
training examples, and where the initial weights come from); one from any other run is ignored, so a
changed delivery or recipe starts over instead of resuming into the wrong run (or, with
`refuse_foreign`, is left alone and the run refuses to start). On CPU a resumed run ends with the
same weights, bit for bit, as one that never stopped (tests/model/test_resume.py).

The starting point enters the fingerprint as the caller's stable id of what the weights are made
from (tasks.train.init_origin), not as the weights' bits: an init that goes through BLAS (an SVD, a
ridge fit) rounds differently on another CPU or thread count, and a checkpoint pushed by one worker
must resume on another.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

LOG = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint.safetensors"
META_KEY = "freshrec"


def fingerprint(config: dict, arrays: list[np.ndarray], start: torch.nn.Module | str) -> str:
    """What a run is: its hyper-parameters, its training data and its starting point: a stable id of
    what the starting weights are made from, or (a module) the weights themselves."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    if isinstance(start, str):
        h.update(b"origin:" + start.encode())
        return h.hexdigest()
    for name, t in sorted(start.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class ForeignCheckpoint(RuntimeError):
    """The checkpoint folder holds another run's checkpoint, and the caller asked to keep it."""


@dataclass
class Position:
    """Where a resumed run picks up: epoch (1-based), the next batch of its order, the running totals."""

    epoch: int
    batch: int
    steps: int
    order: torch.Tensor
    loss_total: float
    loss_count: int


@dataclass
class Checkpointing:
    """Checkpoint a `tasks.train.fit` run into `dir` every `every_seconds` (0: after every batch).

    `extra` / `extra_tensors` are the caller's own state (JSON / tensors), saved with each checkpoint
    (`before_save()` may refresh them) and filled back on a resume; `on_save(path)` runs after each
    save (e.g. a push to the object store, so a run killed on one worker resumes on another).
    `refuse_foreign`: another run's checkpoint raises ForeignCheckpoint instead of being replaced
    (a long benchmark whose hours of progress a changed option must not wipe)."""

    dir: Path
    every_seconds: float = 300.0
    on_save: Callable[[Path], None] | None = None
    before_save: Callable[[], None] | None = None
    extra: dict = field(default_factory=dict)
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    fingerprint: str = ""
    refuse_foreign: bool = False
    _last: float = field(default=0.0, repr=False)

    @property
    def path(self) -> Path:
        return Path(self.dir) / CHECKPOINT_FILE

    def _meta(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})[META_KEY])
        except Exception as exc:  # not ours, or damaged: never resume from it
            LOG.warning("ignoring unreadable checkpoint %s (%s): training starts over", self.path, exc)
            return None
        if meta.get("fingerprint") != self.fingerprint:
            if self.refuse_foreign:
                raise ForeignCheckpoint(
                    f"{self.path} is the checkpoint of another run (other options, data or starting point, "
                    f"epoch {meta.get('epoch')}): rerun with the options it was started with to resume it, "
                    "or move it away to start this run"
                )
            LOG.info("checkpoint %s belongs to another run (other data or settings): training starts over", self.path)
            return None
        return meta

    def peek(self) -> bool:
        """Fill `extra` and `extra_tensors` from a checkpoint of this run; False if there is none."""
        meta = self._meta()
        if meta is None:
            return False
        self.extra = meta["extra"]
        with safe_open(str(self.path), framework="pt") as f:
            names = f.keys()
            self.extra_tensors = {k[6:]: f.get_tensor(k) for k in names if k.startswith("extra.")}
        return True

    def restore(self, model, opt, sched, gen: torch.Generator) -> Position | None:
        """Load model, optimizer, scheduler and RNG state from this run's checkpoint, if there is one. The
        interval starts now either way: a run's first checkpoint is due `every_seconds` after it starts."""
        self._last = time.monotonic()
        meta = self._meta()
        if meta is None:
            return None
        with safe_open(str(self.path), framework="pt") as f:
            names = f.keys()
            tensors = {k: f.get_tensor(k) for k in names}
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
        opt.load_state_dict({"state": state, "param_groups": meta["optim_groups"]})
        sched.load_state_dict(meta["sched"])
        torch.set_rng_state(tensors["rng.torch"])
        if torch.cuda.is_available():
            n = sum(k.startswith("rng.cuda.") for k in tensors)
            if n == torch.cuda.device_count():
                torch.cuda.set_rng_state_all([tensors[f"rng.cuda.{i}"] for i in range(n)])
        gen.set_state(tensors["rng.order"])
        self.extra = meta["extra"]
        self.extra_tensors = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
        pos = Position(
            meta["epoch"], meta["batch"], meta["steps"], tensors["epoch.order"], meta["loss_total"], meta["loss_count"]
        )
        LOG.info("resuming training from %s: epoch %d, batch %d, step %d", self.path, pos.epoch, pos.batch, pos.steps)
        self._last = time.monotonic()
        return pos

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_seconds

    def save(self, model, opt, sched, gen: torch.Generator, pos: Position) -> None:
        if self.before_save is not None:
            self.before_save()
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        opt_state = opt.state_dict()
        for i, per_param in opt_state["state"].items():
            for name, v in per_param.items():
                tensors[f"optim.{i}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = s
        tensors["rng.order"] = gen.get_state()
        tensors["epoch.order"] = pos.order
        tensors.update({f"extra.{k}": v for k, v in self.extra_tensors.items()})
        meta = {
            "fingerprint": self.fingerprint,
            "epoch": pos.epoch,
            "batch": pos.batch,
            "steps": pos.steps,
            "loss_total": pos.loss_total,
            "loss_count": pos.loss_count,
            "optim_groups": opt_state["param_groups"],
            "sched": sched.state_dict(),
            "extra": self.extra,
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{CHECKPOINT_FILE}.{os.getpid()}.tmp")
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._last = time.monotonic()
        if self.on_save is not None:
            self.on_save(self.path)

    def clear(self) -> None:
        """The run finished: its checkpoint has served (the caller pushes the removal, if it shares it)."""
        self.path.unlink(missing_ok=True)
