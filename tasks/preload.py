"""What a machine that runs the day's tasks imports once, before it forks a process for each task try.

Airflow 3 runs every task try in a process forked from a long-lived parent: a LocalExecutor worker (itself
forked from the scheduler's forkserver), or a Celery pool process. Each step then imports its own stack,
and on two cores that is seconds a task: torch + transformers (models.seqrec: train, evaluate, export,
benchmark, and drift against a champion, five tasks a day) about 4.7 s, Great Expectations (validate)
about 5 s, onnx + the quantizer about 1 s. Imported here, in the parent, every try inherits them
copy-on-write and starts with them loaded.

Importing them starts no Python thread (tests/unit/test_preload.py), so forking the parent stays safe;
the native threads that do start (OpenBLAS's pools, pyarrow's jemalloc) have their own fork handlers, and
torch's intra-op pool is only started on first use, which happens in a task, never here. A library that
fails to import is logged and skipped: the step that needs it raises its own error, in its own task.
The cost: the parent holds about 0.5 GB more (shared copy-on-write with its tasks), and the first task
after a scheduler starts waits for the forkserver's preload (about 9 s here, once).

How a deployment loads it (scripts/env.sh, docker/compose.yaml):
- LocalExecutor: `[scheduler] mp_start_method = forkserver` and `[scheduler] mp_forkserver_preload =
  airflow,airflow.executors.local_executor,tasks.preload`; the scheduler itself stays light.
- CeleryExecutor: `[celery] celery_config_options = tasks.celery_config.CELERY_CONFIG`, whose `imports`
  load this module in the worker's main process before its prefork pool starts.
"""

from __future__ import annotations

import gc
import importlib
import logging
import time

LOG = logging.getLogger(__name__)

MODULES = (
    "models.seqrec",  # torch, safetensors, transformers' GPT-2
    "great_expectations",
    "great_expectations.expectations",
    "great_expectations.checkpoint",
    "onnx",
    "onnxruntime",
    "onnxruntime.quantization",
    "pandas",
    "pyarrow.parquet",
)


def preload(modules: tuple[str, ...] = MODULES) -> dict[str, float]:
    """Import `modules`; the seconds each took. Nothing here may fail: a parent that dies while importing
    (Airflow's forkserver, a Celery worker) would stop every task from starting, where a module left out
    only costs the task that needs it its own import, or its own named error."""
    try:
        from tasks.common import quiet_third_party_logs

        quiet_third_party_logs()  # as every task does first: GX's import chatter stays out of the worker's log
    except Exception as exc:  # a quieter log is not worth a parent that cannot start
        LOG.warning("logs not quieted before the preload (%s: %s)", type(exc).__name__, exc)
    took = {}
    for name in modules:
        t0 = time.perf_counter()
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:  # the task that needs it fails on its own, naming it
            LOG.warning("not preloaded: %s (%s: %s)", name, type(exc).__name__, exc)
            continue
        took[name] = round(time.perf_counter() - t0, 2)
    LOG.info("preloaded for the task processes forked from here: %s", took)
    return took


LOADED = preload()
# the loaded objects leave the collector's generations: a forked try's collections never walk them (reference
# counts still copy the pages they touch); a Celery worker unfreezes its parent when ready, as Airflow does
gc.freeze()
