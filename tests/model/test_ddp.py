"""Data-parallel training from the same step: `train.processes: 2` runs `torchrun --standalone
--nproc_per_node 2 -m tasks.train` (gloo on CPU, NCCL on GPUs) and trains what one process trains, to a
tolerance: the same batches, each process its half, the gradients averaged. One process writes the model."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
import yaml

from tests.data.conftest import land_days

pytestmark = [pytest.mark.slow]
DAY = dt.date(1997, 9, 28)
ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_train_what_one_trains(ml100k, tmp_path):
    """The train step with `train.processes: 2` (tasks.train.run_distributed: torchrun over the step's CLI)
    against the same step in one process."""
    from tasks.common import Layout
    from tasks.params import resolve
    from tasks.train import run, run_distributed

    one = Layout(tmp_path / "one")
    land_days(ml100k, tmp_path / "landing", one, DAY, 8)
    shutil.copytree(one.root, tmp_path / "two")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"].update(text_init=False, hidden_size=32, num_layers=1)
    raw["train"]["full"].update(epochs=3, batch_size=32)
    params = resolve(raw, "test")
    single = run(DAY, params, one, "full", progress=False)
    # checkpointing after every batch: the first process alone writes them, and the finished run clears them
    double = run_distributed(DAY, params | {"train": params["train"] | {"processes": 2, "checkpoint_seconds": 0}},
                             Layout(tmp_path / "two"), "full")  # fmt: skip
    assert (single.steps, single.examples, single.mode) == (double.steps, double.examples, "full")
    assert double.final_loss == pytest.approx(single.final_loss, rel=0.02), (single.final_loss, double.final_loss)
    saved = Layout(tmp_path / "two").run(DAY) / "challenger"
    assert (saved / "weights.safetensors").exists() and not any((saved.parent / "checkpoint").iterdir())
