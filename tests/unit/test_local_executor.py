"""tasks/local_executor.py: a deferral's late exit is not taken for the end of the try that runs again.

The race needs a scheduler slow to read its executor's results (seconds, on a loaded machine), which no
test can produce on demand; here the executor's result queue receives the events in that order. The
worker processes are left out (they would run the workloads); the queues are the real ones."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import subprocess
import sys
from multiprocessing import SimpleQueue
from types import SimpleNamespace

from airflow.executors import local_executor as stock
from airflow.executors.workloads import ExecuteTask
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.utils.state import TaskInstanceState

from tasks.local_executor import LocalExecutor

KEY = TaskInstanceKey("freshrec_daily", "approve_promotion", "manual__1997-10-01", 1, -1)
SUCCESS, FAILED = TaskInstanceState.SUCCESS, TaskInstanceState.FAILED


def _executor(cls):
    ex = cls(parallelism=4)
    ex.activity_queue, ex.result_queue, ex.workers = SimpleQueue(), SimpleQueue(), {}
    ex._unread_messages = multiprocessing.Value(ctypes.c_uint)
    ex._check_workers = lambda: None  # no worker processes: nothing runs the workloads
    return ex


def _start(ex, key=KEY):
    """The scheduler queues the task instance and the executor hands it to its workers."""
    ex.queued_tasks[key] = workload = ExecuteTask.model_construct(ti=SimpleNamespace(key=key, id=key))
    ex._process_workloads([workload])


def _exit(ex, state, key=KEY):
    ex.result_queue.put((key, state, None))
    ex._read_results()
    return ex.event_buffer.pop(key, None)


def _deferred_and_resumed(cls):
    """The approval asks, defers, its process exits; the approver answers at once, the same try is queued
    again; only then does the scheduler read the first process's exit. That exit's event, if any."""
    ex = _executor(cls)
    _start(ex)
    _start(ex)
    return ex, _exit(ex, SUCCESS)


def test_airflows_executor_hands_on_the_deferrals_exit():
    """Airflow 3.3.2: an event its scheduler reads as a task killed externally. When an Airflow release
    stops this, tasks/local_executor.py can go."""
    _, stale = _deferred_and_resumed(stock.LocalExecutor)
    assert stale == (SUCCESS, None)


def test_a_deferrals_exit_read_after_the_try_is_queued_again_is_not_its_end():
    ex, stale = _deferred_and_resumed(LocalExecutor)
    assert stale is None
    assert _exit(ex, SUCCESS) == (SUCCESS, None)  # the resumed process's own end goes through
    assert not ex.started


def test_every_other_end_goes_through():
    ex = _executor(LocalExecutor)
    _start(ex)
    assert _exit(ex, SUCCESS) == (SUCCESS, None)  # a task that ran once
    _start(ex)
    _start(ex)
    assert _exit(ex, FAILED) == (FAILED, None)  # a failure is never dropped
    assert _exit(ex, SUCCESS) == (SUCCESS, None)
    other = TaskInstanceKey("freshrec_daily", "train_challenger", "manual__1997-10-01", 1, -1)
    assert _exit(ex, SUCCESS, other) == (SUCCESS, None)  # a process this executor did not start
    assert not ex.started


def test_airflow_loads_it_by_its_path():
    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": "tasks.local_executor.LocalExecutor"}
    code = "from airflow.executors.executor_loader import ExecutorLoader as L; e = L.get_default_executor(); " \
           "print(type(e).__module__, e.is_local)"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split()[-2:] == ["tasks.local_executor", "True"], out.stderr[-2000:]
