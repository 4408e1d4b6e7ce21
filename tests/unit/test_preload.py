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


def _run(code: str, env: dict | None = None) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env or os.environ, timeout=110
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


def test_a_module_that_fails_to_import_never_takes_the_parent_down(tmp_path):
    """Airflow's forkserver (and a Celery worker) dies with an exception that escapes the preload, and then no
    task starts at all; a module left out costs only the task that needs it."""
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('broken install')\n")
    (tmp_path / "exits_on_import.py").write_text("raise SystemExit(3)\n")
    out = _run(
        f"import json, sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "from tasks.preload import preload\n"
        "print(json.dumps(sorted(preload(('raises_on_import', 'exits_on_import', 'json')))))"
    )
    assert out == ["json"]


def test_offline_defaults_are_set_before_the_libraries_read_them():
    """huggingface_hub reads HF_HUB_OFFLINE when imported: now in the parent, by way of models.seqrec, so the
    default is set by the models package itself (models/__init__.py), before any of its modules imports it."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = "import json, tasks.preload, huggingface_hub.constants as c; print(json.dumps(c.HF_HUB_OFFLINE))"
    assert _run(code, env) is True
