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
import traceback

import pytest

GRACE_S = 120.0  # after the test's pytest-timeout limit; that limit stays the first, cleaner, line
LAST_RESORT_S = 60.0  # after GRACE_S: faulthandler exits the process if even the timer thread could not run


def _limit_of(item: pytest.Item) -> float:
    """The test's pytest-timeout limit, read as pytest-timeout reads it (marker, --timeout,
    PYTEST_TIMEOUT, ini); 0 when it has none (or pytest-timeout is absent)."""
    try:
        import pytest_timeout

        return float(pytest_timeout._get_item_settings(item).timeout or 0)
    except (ImportError, AttributeError, TypeError, ValueError):
        return 0.0


def _debugging() -> bool:
    """pytest's pdb was entered: pytest-timeout stands down then, and so does the watchdog."""
    try:
        import pytest_timeout

        return bool(pytest_timeout.SUPPRESS_TIMEOUT)
    except (ImportError, AttributeError):
        return False


def _stop_children(wait_s: float = 10.0) -> list[int]:
    """TERM, then KILL, every process this one started (recursively); their PIDs."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=wait_s)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=wait_s)
    return [c.pid for c in children]


def _hung(item: pytest.Item, after_s: float) -> None:
    if _debugging():
        return
    try:
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
    except BaseException:  # whatever fails here, the session must still end
        traceback.print_exc()
    finally:
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
        # and a last resort on a C thread, for a main thread stuck in C code that holds the GIL
        faulthandler.dump_traceback_later(after + LAST_RESORT_S, exit=True)
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
            faulthandler.cancel_dump_traceback_later()
        if on_term is not None:  # None: a handler set from C, which Python cannot put back
            signal.signal(signal.SIGTERM, on_term)
