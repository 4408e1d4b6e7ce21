"""A task imports what its step needs and no more. Each Airflow task is a process of its own, so a step that
loaded torch and transformers without using them paid about 5 s of CPU for nothing (ingest, validate,
prepare_approval and promote did, through one import line shared by every step)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

from .conftest import DAY

HEAVY = ("torch", "transformers", "great_expectations", "onnxruntime", "dvc")
_RUN = """
import json, sys
from pathlib import Path
from tasks.common import Layout, parse_day
from tasks.params import load_params
from tasks.pipeline import DayOptions, step_call
from tasks.store import Store

params = load_params()
step_call(sys.argv[1], parse_day(sys.argv[2]), params, Layout(Path(sys.argv[3])), Store.from_env(params), DayOptions())
print(json.dumps(sorted(m for m in sys.argv[4].split(",") if m in sys.modules)))
"""


@pytest.mark.parametrize(("step", "loads"), [("ingest_events", []), ("validate_events", ["great_expectations"])])
def test_a_step_in_a_process_of_its_own_loads_only_what_it_uses(step, loads, landed, layout, params, s3_env,
                                                               write_params):  # fmt: skip
    write_params(params)
    res = subprocess.run(
        [sys.executable, "-c", _RUN, step, str(DAY), str(layout.root), ",".join(HEAVY)],
        capture_output=True, text=True, cwd=ROOT, env=os.environ, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == loads


def test_drift_without_a_champion_loads_no_model_stack(params, write_params):
    """The bootstrap's day (no champion yet) measures drift on the events alone: no torch, no transformers
    (the model's file names and item list are in tasks/units.py, not behind tasks.train's imports)."""
    write_params(params)
    code = """
import json, sys
import pandas as pd
from tasks.drift import detect, distributions, windows
from tasks.params import load_params
from tasks.sources import load_dataset

day = pd.Timestamp(sys.argv[1]).date()
events = load_dataset("ml-100k").events
events = events[events["event_ts"] < pd.Timestamp(sys.argv[1], tz="UTC") + pd.Timedelta(days=1)]
wins = windows(events, day, None, 7)
report = detect(events, day, None, load_params(), wins, distributions(wins.reference, wins.current))
assert report["decision"] == "full", report
print(json.dumps(sorted(m for m in sys.argv[2].split(",") if m in sys.modules)))
"""
    res = subprocess.run([sys.executable, "-c", code, str(DAY), ",".join(HEAVY)], capture_output=True, text=True,
                         cwd=ROOT, env=os.environ, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []
