"""What a task-running parent imports once (tasks/preload.py): the day's heavy stack, and no thread, so the
task processes Airflow forks from it inherit the modules and stay safe to fork; and a Celery configuration
that the scheduler can read without loading any of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)


def _run(code: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, env=os.environ, timeout=110
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_preload_loads_the_days_stack_and_starts_no_thread():
    out = _run(
        "import json, sys, threading\n"
        "import tasks.preload as p\n"
        "print(json.dumps({'threads': [t.name for t in threading.enumerate()], 'loaded': sorted(p.LOADED),\n"
        "  'mods': {m: m in sys.modules for m in ('torch', 'transformers', 'great_expectations', 'onnxruntime')}}))"
    )
    assert out["threads"] == ["MainThread"], "a thread in the parent would be lost (or hold a lock) in each fork"
    assert all(out["mods"].values()), out["mods"]
    assert {"models.seqrec", "great_expectations", "onnxruntime"} <= set(out["loaded"]), out["loaded"]


def test_a_fork_of_the_preloaded_parent_runs_torch():
    """What a task try does: fork, then use torch's thread pool in the child (started on first use)."""
    out = _run(
        "import json, os\n"
        "import tasks.preload\n"
        "import torch\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    torch.set_num_threads(2); x = torch.ones(256, 256)\n"
        "    os.write(w, str(int((x @ x).sum())).encode()); os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(json.dumps({'status': status, 'child': os.read(r, 64).decode()}))"
    )
    assert out == {"status": 0, "child": str(256**3)}


def test_the_celery_config_preloads_in_workers_only():
    out = _run(
        "import json, sys\n"
        "from tasks.celery_config import CELERY_CONFIG\n"
        "from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG\n"
        "print(json.dumps({'imports': list(CELERY_CONFIG['imports']), 'torch': 'torch' in sys.modules,\n"
        "  'rest': {k: v == DEFAULT_CELERY_CONFIG[k] for k, v in CELERY_CONFIG.items() if k != 'imports'}}))"
    )
    assert out["imports"][-1] == "tasks.preload"
    assert not out["torch"], "the scheduler reads this dict: it must not load the task stack"
    assert all(out["rest"].values()), out["rest"]
