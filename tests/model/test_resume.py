"""Resumable training (tasks/checkpoint.py) and the loss and batching variants of tasks.train.fit.

A run killed at any point resumes from its last checkpoint and ends, on CPU, with the same weights
bit for bit as a run that never stopped: killed right after a checkpoint (in process), and killed by
SIGKILL at an arbitrary instant, possibly mid-write (a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from models.seqrec import SeqRecConfig, SeqRecModel
from tasks.checkpoint import CHECKPOINT_FILE, Checkpointing
from tasks.train import Recipe, fit, sampled_softmax

ROOT = Path(__file__).resolve().parents[2]
CFG = {"n_items": 60, "max_len": 12, "hidden_size": 16, "num_layers": 1, "num_heads": 2, "dropout": 0.2}
RECIPES = {
    "full": Recipe(3, 16, 3e-3, schedule="warmup_cosine"),
    "sampled+bucketing": Recipe(3, 16, 3e-3, loss="sampled", negatives=8, bucketing=True),
}


class Killed(Exception):
    """Stands for SIGKILL right after a checkpoint (injected through the on_save hook)."""


def _examples(n: int = 120, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sequences i, i+1, ... of varied length, left-padded: learnable, with padding to cut."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length, start = int(rng.integers(3, 13)), int(rng.integers(1, 46))
        seq = np.arange(start, start + length + 1)
        x, y = np.zeros(12, np.int64), np.zeros(12, np.int64)
        x[-length:], y[-length:] = seq[:-1], seq[1:]
        out.append((x, y))
    return out


def _model(block: str = "gpt2", repeat_score: bool = False) -> SeqRecModel:
    torch.manual_seed(0)
    return SeqRecModel(SeqRecConfig(**CFG, block=block, repeat_score=repeat_score))


def _train(recipe, ckpt=None, on_epoch=None, repeat_score=False):
    model = _model(repeat_score=repeat_score)
    steps, loss = fit(model, _examples(), recipe, 0, torch.device("cpu"), False, on_epoch, ckpt)
    return model, steps, loss


def _same(a: SeqRecModel, b: SeqRecModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_first_checkpoint_waits_its_interval(tmp_path):
    """`every_seconds` counts from the run's start: a run shorter than the interval saves nothing (it used to
    save, and the daily DAG push, a checkpoint after its first batch)."""
    saves = []
    _train(RECIPES["full"], Checkpointing(tmp_path, every_seconds=300, on_save=saves.append))
    assert saves == [] and not (tmp_path / CHECKPOINT_FILE).exists()


@pytest.mark.parametrize(("name", "repeat_score"), [(n, False) for n in RECIPES] + [("full", True)],
                         ids=[*RECIPES, "full+repeat_score"])  # fmt: skip
def test_a_killed_run_resumes_to_the_same_weights(name, repeat_score, tmp_path):
    recipe = RECIPES[name]
    whole, whole_steps, whole_loss = _train(recipe, repeat_score=repeat_score)
    saves = []

    def kill_at_eleventh(path):
        saves.append(path)
        if len(saves) == 11:  # mid-epoch 2 (8 batches an epoch)
            raise Killed

    with pytest.raises(Killed):
        _train(recipe, Checkpointing(tmp_path, every_seconds=0, on_save=kill_at_eleventh), repeat_score=repeat_score)
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    resumed, steps, loss = _train(recipe, Checkpointing(tmp_path, every_seconds=0), repeat_score=repeat_score)
    assert _same(resumed, whole)
    assert ("repeat_weight" in resumed.state_dict()) == repeat_score
    assert (steps, loss) == (whole_steps, whole_loss)


def test_the_caller_state_is_saved_and_restored_with_the_checkpoint(tmp_path):
    """bench/quality.py keeps its validation curve and best weights in the checkpoint."""
    seen = []

    def kill_at_twelfth(path):
        seen.append(path)
        if len(seen) == 12:
            raise Killed

    ckpt = Checkpointing(tmp_path, every_seconds=0, on_save=kill_at_twelfth)

    def on_epoch(epoch):
        ckpt.extra.setdefault("curve", []).append(epoch)
        ckpt.extra_tensors["best"] = torch.full((2,), float(epoch))
        return True

    with pytest.raises(Killed):
        _train(RECIPES["full"], ckpt, on_epoch)
    again = Checkpointing(tmp_path, every_seconds=0)
    assert again.peek() is False  # peek needs the run's fingerprint, which fit sets ...
    again.fingerprint = ckpt.fingerprint
    assert again.peek() and again.extra == {"curve": [1]} and again.extra_tensors["best"].tolist() == [1.0, 1.0]


def test_a_run_resumes_from_its_origin_whatever_the_bits_of_its_init(tmp_path):
    """With an origin (what the init is made from), a resume whose init rounded differently (another
    CPU, another thread count: here one ulp) is the same run; without one, the bits are the run."""
    recipe = RECIPES["full"]
    whole, *_ = _train(recipe)

    def kill(path):
        raise Killed

    def train_from(init_nudge: bool, origin, ckpt):
        model = _model()
        if init_nudge:
            with torch.no_grad():
                model.item_emb.weight.copy_(torch.nextafter(model.item_emb.weight, torch.tensor(1.0)))
        fit(model, _examples(), recipe, 0, torch.device("cpu"), False, None, ckpt, origin=origin)
        return model

    with pytest.raises(Killed):
        train_from(False, "init-a", Checkpointing(tmp_path, every_seconds=0, on_save=kill))
    resumed = train_from(True, "init-a", Checkpointing(tmp_path, every_seconds=0))
    assert _same(resumed, whole)  # resumed at step 1 from the checkpoint's weights, not the nudged init
    with pytest.raises(Killed):
        train_from(False, None, Checkpointing(tmp_path, every_seconds=0, on_save=kill))
    assert not _same(train_from(True, None, Checkpointing(tmp_path, every_seconds=0)), whole)  # started over


def test_a_long_run_can_refuse_to_replace_another_runs_checkpoint(tmp_path):
    """refuse_foreign (bench/quality.py): a changed option stops with the reason instead of wiping hours."""
    from tasks.checkpoint import ForeignCheckpoint

    def kill(path):
        raise Killed

    with pytest.raises(Killed):
        _train(RECIPES["full"], Checkpointing(tmp_path, every_seconds=0, on_save=kill))
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    other = Recipe(3, 16, 1e-2, schedule="warmup_cosine")
    with pytest.raises(ForeignCheckpoint, match=r"checkpoint of another run .* epoch 1.*rerun with the options"):
        _train(other, Checkpointing(tmp_path, every_seconds=0, refuse_foreign=True))
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before
    resumed, *_ = _train(RECIPES["full"], Checkpointing(tmp_path, every_seconds=0, refuse_foreign=True))
    assert _same(resumed, _train(RECIPES["full"])[0])  # its own run resumes as ever


def test_a_checkpoint_of_another_run_or_a_damaged_one_is_not_resumed(tmp_path, caplog):
    recipe = RECIPES["full"]
    whole, *_ = _train(recipe)

    def kill(path):
        raise Killed

    other = Recipe(3, 16, 1e-2, schedule="warmup_cosine")  # another learning rate: another run
    with pytest.raises(Killed):
        _train(other, Checkpointing(tmp_path, every_seconds=0, on_save=kill))
    with caplog.at_level("INFO", logger="tasks.checkpoint"):
        fresh, *_ = _train(recipe, Checkpointing(tmp_path, every_seconds=0))
    assert _same(fresh, whole) and "belongs to another run" in caplog.text
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with caplog.at_level("WARNING", logger="tasks.checkpoint"):
        fresh, *_ = _train(recipe, Checkpointing(tmp_path, every_seconds=0))
    assert _same(fresh, whole) and "unreadable checkpoint" in caplog.text


SCRIPT = """
import sys, torch
sys.path.insert(0, {root!r}); sys.path.insert(0, {here!r})
torch.set_num_threads(1)
from test_resume import RECIPES, _train
from tasks.checkpoint import Checkpointing
from tasks.train import Recipe
recipe = Recipe(40, 16, 3e-3, schedule="warmup_cosine")
model, steps, loss = _train(recipe, Checkpointing(sys.argv[1], every_seconds=0))
model.save(sys.argv[2])
"""


def _script(ckpt: Path, out: Path) -> list[str]:
    code = SCRIPT.format(root=str(ROOT), here=str(Path(__file__).parent))
    return [sys.executable, "-c", code, str(ckpt), str(out)]


@pytest.mark.slow
def test_sigkill_at_any_instant_then_resume_gives_the_same_weights(tmp_path):
    """A real kill, wherever it lands (mid-step, mid-write): the atomic checkpoint survives it."""
    whole = subprocess.run(_script(tmp_path / "a", tmp_path / "whole"), check=True, timeout=600)
    assert whole.returncode == 0
    proc = subprocess.Popen(_script(tmp_path / "b", tmp_path / "killed"), start_new_session=True)
    ckpt = tmp_path / "b" / CHECKPOINT_FILE
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)  # well into the run: about a hundred checkpoints written
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed").exists(), "the run finished before the kill: make it longer"
    subprocess.run(_script(tmp_path / "b", tmp_path / "resumed"), check=True, timeout=600)
    a = (tmp_path / "whole" / "weights.safetensors").read_bytes()
    b = (tmp_path / "resumed" / "weights.safetensors").read_bytes()
    assert a == b
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["n_items"] == 60


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(12, 16, 3e-3),
        Recipe(12, 16, 3e-3, loss="sampled", negatives=8),
        Recipe(12, 16, 3e-3, loss="sampled", negatives=8, logq=False),
        Recipe(12, 16, 3e-3, bucketing=True),
        Recipe(12, 16, 3e-3, bf16="on"),
    ],
    ids=["full", "sampled-logq", "sampled", "bucketing", "bf16"],
)
def test_every_loss_and_batching_variant_learns_the_pattern(recipe):
    """i -> i+1 is learned: the true next item ranks in the top 3 for most held-out prefixes."""
    model, steps, loss = _train(recipe)
    assert steps == 12 * 8 and np.isfinite(loss)
    probe = torch.zeros(20, 12, dtype=torch.long)
    starts = torch.arange(5, 45, 2)
    for i in range(4):
        probe[:, 8 + i] = starts + i
    top = model.last_scores(probe).topk(3, dim=-1).indices
    hit = (top == (starts + 4).unsqueeze(1)).any(1).float().mean().item()
    assert hit >= 0.6, hit


def test_sampled_softmax_masks_accidental_hits_and_corrects_for_popularity():
    model = _model()
    states = torch.randn(4, 16)
    y = torch.tensor([1, 2, 3, 4])
    q = torch.full((59,), 1 / 59)
    gen = torch.Generator().manual_seed(0)
    loss = sampled_softmax(model, states, y, q, 200, True, gen)  # 200 draws of 59 items: every target is drawn
    assert torch.isfinite(loss)
    # uniform q: logQ shifts every logit equally, so it changes nothing
    a = sampled_softmax(model, states, y, q, 16, True, torch.Generator().manual_seed(1))
    b = sampled_softmax(model, states, y, q, 16, False, torch.Generator().manual_seed(1))
    assert torch.allclose(a, b, atol=1e-6)
    skew = torch.linspace(1, 10, 59)
    c = sampled_softmax(model, states, y, skew / skew.sum(), 16, True, torch.Generator().manual_seed(1))
    d = sampled_softmax(model, states, y, skew / skew.sum(), 16, False, torch.Generator().manual_seed(1))
    assert not torch.allclose(c, d)


@pytest.mark.parametrize("block", ["gpt2", "ligr"])
def test_a_batch_cut_to_its_longest_sequence_scores_like_the_full_window(block):
    model = _model(block).eval()
    x = torch.zeros(3, 12, dtype=torch.long)
    x[:, -5:] = torch.randint(1, 60, (3, 5))
    with torch.no_grad():
        assert torch.allclose(model(x)[:, -5:], model(x[:, -5:]), atol=1e-6)


def test_bad_recipes_are_refused_with_the_setting_named():
    from tasks.common import FreshrecError

    with pytest.raises(FreshrecError, match="loss='bpr'"):
        Recipe(1, 8, 1e-3, loss="bpr")
    with pytest.raises(FreshrecError, match="negatives=0"):
        Recipe(1, 8, 1e-3, loss="sampled", negatives=0)
    with pytest.raises(FreshrecError, match="bf16='yes'"):
        Recipe(1, 8, 1e-3, bf16="yes")


def test_the_fingerprint_of_a_gpt2_run_is_what_it_was_before_blocks_existed():
    """Checkpoints written before `block` existed resume: the default block is left out of the
    fingerprint, another block changes it."""
    import hashlib

    from tasks.train import init_origin

    cfg = SeqRecConfig(**CFG)
    before = {"config": dict(CFG), "seed": 1, "items": ["a", "b"], "more": {}}  # the config as it was hashed
    old = hashlib.sha256(json.dumps(before, sort_keys=True, default=str).encode()).hexdigest()
    assert init_origin(cfg, 1, ["a", "b"], {}) == old
    assert init_origin(SeqRecConfig(**CFG, block="ligr"), 1, ["a", "b"], {}) != old
