"""The test watchdog (tests/watchdog.py) ends a test whose pytest-timeout SIGALRM was cleared, as
Airflow's DAG import clears it: the run fails within seconds of the limit, says which test hung and
where, and leaves no process it started running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]

HUNG_TEST = """
import signal, subprocess, sys, time
from pathlib import Path

def test_hangs_after_airflow_took_the_alarm():
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    Path("server.pid").write_text(str(server.pid))
    signal.setitimer(signal.ITIMER_REAL, 0)  # what parsing a DAG file does to pytest-timeout's timer
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_hung_test_is_ended_with_its_stacks_and_its_servers_stopped(tmp_path):
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["tests.watchdog"]\nimport tests.watchdog\ntests.watchdog.GRACE_S = 1.0\n'
    )
    (tmp_path / "test_hung.py").write_text(HUNG_TEST)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--timeout", "2", "-q", "test_hung.py"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    started = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the hung test was not ended:\n{out.decode()[-2000:]}") from None
    finally:
        pid_file = tmp_path / "server.pid"
        server = int(pid_file.read_text()) if pid_file.exists() else None
        if server and _alive(server):
            os.kill(server, signal.SIGKILL)
            alive_after_run = True
        else:
            alive_after_run = False
    text = out.decode()
    assert proc.returncode == 1, text[-2000:]
    assert time.monotonic() - started < 60
    assert "watchdog: test_hung.py::test_hangs_after_airflow_took_the_alarm is still running" in text
    assert 'test_hung.py", line 9 in test_hangs_after_airflow_took_the_alarm' in text  # where it hung
    assert server is not None and not alive_after_run  # the "server" it started was stopped


def test_a_session_that_ran_an_airflow_task_still_stops_on_sigterm(tmp_path):
    """Airflow's in-process task runner leaves a SIGTERM handler that does not exit; after the test
    that ran it, `kill PID` (and `timeout`) stop the session again."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.watchdog"]\n')
    (tmp_path / "test_term.py").write_text(
        "import signal, time\n"
        "from pathlib import Path\n"
        "def test_takes_sigterm():\n"
        "    signal.signal(signal.SIGTERM, lambda *a: None)  # what running a task in-process leaves\n"
        "def test_waits():\n"
        "    Path('waiting').touch()\n"
        "    time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_term.py"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "waiting").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (tmp_path / "waiting").exists(), "the second test never started"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("the session ignored SIGTERM") from None
    assert proc.returncode == -signal.SIGTERM
