"""A per-test watchdog that still works when Airflow has taken SIGALRM from pytest-timeout.

pytest-timeout (method "signal") arms one SIGALRM timer per test. Airflow re-arms and then clears
that same process-wide timer: parsing a DAG file runs under `signal.setitimer(ITIMER_REAL, ...)`
and ends with `setitimer(ITIMER_REAL, 0)` (airflow/dag_processing/importers/python_importer.py),
and so does a task with an `execution_timeout` run in-process by `dag.test()`. After the first
DagBag of a test, that test has no timeout at all: a hung `dag.test()` ran until CI's 90-minute
limit killed the whole job, with no word of where it hung.

This timer is a thread, which no signal handler can cancel. It fires `GRACE_S` after the test's
pytest-timeout limit, that is only when pytest-timeout did not end the test: it prints the test's
name and the stack of every thread, stops the processes the test session started (servers,
workers: by PID, TERM then KILL), and exits with status 1 so the run fails at once, and says why.

It also gives back, after each test, the SIGTERM handler that an in-process Airflow task took.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading

import pytest

GRACE_S = 120.0  # after the test's pytest-timeout limit; that limit stays the first, cleaner, line


def _limit_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and (marker.args or "timeout" in marker.kwargs):
        return float(marker.args[0] if marker.args else marker.kwargs["timeout"])
    try:
        return float(item.config.getoption("timeout") or item.config.getini("timeout") or 0)
    except (ValueError, TypeError):  # pytest-timeout absent: no limit to watch
        return 0.0


def _stop_children(wait_s: float = 10.0) -> list[int]:
    """TERM, then KILL, every process this one started (recursively); their PIDs."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=wait_s)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(alive, timeout=wait_s)
    return [c.pid for c in children]


def _hung(item: pytest.Item, after_s: float) -> None:
    capture = item.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)  # so what follows reaches the console / CI log
    out = sys.__stderr__
    out.write(
        f"\n\n+++ watchdog: {item.nodeid} is still running after {after_s:.0f} s, past its pytest-timeout "
        f"limit; that timeout never fired (SIGALRM re-armed by Airflow) or could not interrupt it.\n"
        "+++ The stack of every thread follows; then the processes this session started are stopped "
        "and pytest exits with status 1.\n"
    )
    out.flush()
    faulthandler.dump_traceback(file=out, all_threads=True)
    stopped = _stop_children()
    out.write(f"+++ watchdog: stopped child processes {stopped}; exiting.\n")
    out.flush()
    os._exit(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    # dag.test() runs tasks in this process, and Airflow's task runner sets a SIGTERM handler that
    # only calls the operator's on_kill, never restored: the session would then ignore `kill PID`
    # and `timeout`. Each test gives back the handler it found.
    on_term = signal.getsignal(signal.SIGTERM)
    limit = _limit_of(item)
    timer = None
    if limit > 0:
        after = limit + GRACE_S
        timer = threading.Timer(after, _hung, args=(item, after))
        timer.daemon = True
        timer.name = f"watchdog {item.nodeid}"
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        signal.signal(signal.SIGTERM, on_term)
