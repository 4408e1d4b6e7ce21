"""A per-test watchdog that still works when Airflow has taken SIGALRM from pytest-timeout.

pytest-timeout (method "signal") arms one SIGALRM timer per test. Airflow re-arms and then clears
that same process-wide timer: parsing a DAG file runs under `signal.setitimer(ITIMER_REAL, ...)`
and ends with `setitimer(ITIMER_REAL, 0)` (airflow/dag_processing/importers/python_importer.py),
and so does a task with an `execution_timeout` run in-process by `dag.test()`. After the first
DagBag of a test, that test has no timeout at all: a hung `dag.test()` ran until CI's 90-minute
limit killed the whole job, with no word of where it hung.

This timer is a thread, which no signal handler can cancel, armed and cancelled through
pytest-timeout's own hooks. It fires `GRACE_S` after the test's pytest-timeout limit, that is only
when pytest-timeout did not end the test: it prints the test's
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
_TIMER = pytest.StashKey[threading.Timer]()  # the test's watchdog, for the cancel hook


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


def _hung(item: pytest.Item, settings, after_s: float) -> None:
    import pytest_timeout

    if not settings.disable_debugger_detection and pytest_timeout.is_debugging():
        return  # pdb is open: pytest-timeout stands down then, and so does the watchdog
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
        faulthandler.dump_traceback(file=out, all_threads=True)  # before the servers go: where it hung
        stopped = _stop_children()
        out.write(f"+++ watchdog: stopped child processes {stopped}; exiting.\n")
        out.flush()
    except BaseException:  # whatever fails here, the session must still end
        traceback.print_exc()
    finally:
        os._exit(1)


# pytest-timeout's own extension point: it calls these with the test's settings (marker, --timeout,
# PYTEST_TIMEOUT, ini; func_only) whenever it arms or cancels its timer. Returning None lets its
# own SIGALRM timer arm too, so a test it can still interrupt fails alone, as before.
@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings) -> None:
    after = settings.timeout + GRACE_S
    timer = threading.Timer(after, _hung, args=(item, settings, after))
    timer.daemon = True
    timer.name = f"watchdog {item.nodeid}"
    timer.start()
    item.stash[_TIMER] = timer
    # and a last resort on a C thread, for a main thread stuck in C code that holds the GIL
    faulthandler.dump_traceback_later(after + LAST_RESORT_S, exit=True)


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    timer = item.stash.get(_TIMER, None)
    if timer is not None:
        timer.cancel()
        faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    # dag.test() runs tasks in this process, and Airflow's task runner sets a SIGTERM handler that
    # only calls the operator's on_kill, never restored: the session would then ignore `kill PID`
    # and `timeout`. Each test gives back the handler it found.
    on_term = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if on_term is not None:  # None: a handler set from C, which Python cannot put back
            signal.signal(signal.SIGTERM, on_term)
