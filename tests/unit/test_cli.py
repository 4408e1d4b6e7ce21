"""A command line piped into a reader that stops early (`python -m tasks.promote status | head`) ends
quietly, as a Unix tool does; a broken pipe anywhere else is a bug and keeps its traceback."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

LOTS = "from tasks.common import setup_cli; setup_cli(); [print('x' * 100) for _ in range(100_000)]"


def _piped_into_head(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", f'"{sys.executable}" -c "{code}" | head -1'],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_reader_that_stops_early_ends_the_command_quietly():
    done = _piped_into_head(LOTS)
    assert done.stdout == "x" * 100 + "\n"
    assert done.stderr == "", done.stderr  # before: a BrokenPipeError traceback, twice (the exit's flush)


def test_a_broken_pipe_that_is_not_stdout_keeps_its_traceback():
    code = "from tasks.common import setup_cli; setup_cli(); raise BrokenPipeError(32, 'a socket')"
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" in done.stderr and "a socket" in done.stderr
