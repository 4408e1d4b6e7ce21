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
