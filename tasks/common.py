"""Shared plumbing for the pipeline steps: params, partition paths, atomic writes, hashing.

Everything here is free of heavy imports so `python -m tasks.<step> --help` and the
Airflow DAG parser stay fast.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy stays out of the import path of DAG parsing
    import numpy as np

LOG = logging.getLogger("freshrec")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ROOT_PARAMS = PROJECT_ROOT / "params.yaml"
DATE_FORMAT = "%Y-%m-%d"
APPROVAL_REASON = "reason"  # the approval request's field for the approver's words (a HITL Param)


class FreshrecError(RuntimeError):
    """An error a person must act on; the message says what is wrong and what to do."""


class ValidationFailed(FreshrecError):
    """The day's events failed validation and were quarantined."""


class GateFailed(FreshrecError):
    """A quality or latency gate refused the challenger; nothing is promoted."""


# Libraries that narrate their internals at INFO (GX's decorator registry, the ONNX rewriter's passes,
# matplotlib's unit guessing, boto's credential lookup): a task log shows freshrec's figures instead.
CHATTY_LOGGERS = ("great_expectations", "onnxscript", "onnx_ir", "matplotlib", "botocore", "urllib3", "filelock")
# Warnings that name nothing the pipeline can act on: GX's own regex helper, torch's exporter internals.
HARMLESS_WARNINGS = (
    (UserWarning, r"This pattern is interpreted as a regular expression, and has match groups"),
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)
# Libraries that narrate on the root logger itself (logging.info), where a logger's level cannot reach:
# onnxruntime's quantizer, a line per tensor. Their records below WARNING are dropped there.
ROOT_CHATTY = ("onnxruntime",)


class _RootChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not any(lib in record.pathname for lib in ROOT_CHATTY)


_ROOT_CHATTER = _RootChatter()


def quiet_third_party_logs() -> None:
    """Keep third-party INFO chatter and known-harmless warnings out of task logs (warnings and errors stay)."""
    import warnings

    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger().addFilter(_ROOT_CHATTER)  # once: addFilter keeps one copy
    for category, message in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (a broken pipe elsewhere, an S3 socket, is a bug)."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError):
        return False


def setup_cli(level: int = logging.INFO) -> None:
    """A command line's logging, and its errors: a refusal (a `FreshrecError`: bad input, a check that failed,
    a missing prerequisite) ends it as one line on stderr and exit status 1, without a traceback; so does a
    reader that stopped reading (`python -m tasks.promote status | head`), silently; any other exception is a
    bug and keeps its traceback."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_third_party_logs()
    default = sys.excepthook

    def refusal_in_one_line(kind, exc, tb):
        if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():  # `... | head`: as a Unix tool ends
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the exit's flush would raise again)
            return None
        if not isinstance(exc, FreshrecError):
            return default(kind, exc, tb)
        print(f"error: {' '.join(line.strip() for line in str(exc).splitlines() if line.strip())}", file=sys.stderr)
        return None  # the interpreter then exits with status 1

    sys.excepthook = refusal_in_one_line


def refusal_fails_for_good(fn, *args, **kwargs):
    """Run `fn` as an Airflow task's work: a refusal (bad data, a failed gate, a FreshrecError that names its
    cause) fails the task for good, since a retry cannot fix it; infrastructure errors (S3 unreachable, a
    killed worker) are left to Airflow's retries. What `setup_cli` is to a command line."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return fn(*args, **kwargs)
    except (ValidationFailed, GateFailed) as exc:
        logging.getLogger("freshrec").error("refused: %s", exc)  # first in the log, not only in Post Execute
        raise AirflowFailException(str(exc)) from exc
    except FreshrecError as exc:  # a refusal that names its cause (bad input or settings): the same on a retry
        logging.getLogger("freshrec").error("refused: %s: %s", type(exc).__name__, exc)
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_day(value: str | dt.date) -> dt.date:
    """Parse a partition day, strictly `YYYY-MM-DD` (a logical date is a day, never `now()`).

    Strict everywhere (CLI, Params, partition names): `1998-01-15/../../x`, `1998-1-5`, `1998-13-40`
    and a timestamp are refused, never cut down to something that looks like a day."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value)
    if not _DAY.fullmatch(text):
        raise FreshrecError(f"bad date {value!r}: expected exactly YYYY-MM-DD, e.g. 1998-03-01")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise FreshrecError(f"bad date {value!r}: {exc}; expected a calendar day as YYYY-MM-DD") from exc


def day_str(day: dt.date) -> str:
    return day.strftime(DATE_FORMAT)


def _digits(lo: int, hi: int, width: int) -> str:
    """A regex for the zero-padded `width`-digit numbers lo..hi."""
    if width == 1:
        return str(lo) if lo == hi else f"[{lo}-{hi}]"
    unit = 10 ** (width - 1)
    (a, b), (c, d) = divmod(lo, unit), divmod(hi, unit)
    if a == c:
        return f"{a}{_digits(b, d, width - 1)}"
    parts = [f"{a}{_digits(b, unit - 1, width - 1)}"]
    if c - a > 1:
        parts.append(f"[{a + 1}-{c - 1}]" + r"\d" * (width - 1))
    parts.append(f"{c}{_digits(0, d, width - 1)}")
    return "(?:" + "|".join(parts) + ")"


def window_pattern(first: dt.date, last: dt.date | None) -> str:
    """A regex for the `YYYY-MM-DD` days first..last (None: open-ended): a JSON-schema `pattern` that lets
    Airflow refuse a day outside the data window when the run is triggered (no worker slot needed).
    Calendar validity (no 1998-02-30) is the schema's `format: date`."""
    last = last or dt.date(9999, 12, 31)
    if last < first:
        raise FreshrecError(f"empty data window {first} .. {last}")
    y1, m1, d1, y2, m2, d2 = first.year, first.month, first.day, last.year, last.month, last.day
    any_day, any_md = r"\d\d", r"\d\d-\d\d"
    if (y1, m1) == (y2, m2):
        alts = [f"{y1:04d}-{m1:02d}-{_digits(d1, d2, 2)}"]
    else:
        alts = [f"{y1:04d}-{m1:02d}-{_digits(d1, 31, 2)}"]
        if y1 == y2:
            alts += [f"{y1:04d}-{_digits(m1 + 1, m2 - 1, 2)}-{any_day}"] if m2 - m1 > 1 else []
        else:
            alts += [f"{y1:04d}-{_digits(m1 + 1, 12, 2)}-{any_day}"] if m1 < 12 else []
            alts += [f"{_digits(y1 + 1, y2 - 1, 4)}-{any_md}"] if y2 - y1 > 1 else []
            alts += [f"{y2:04d}-{_digits(1, m2 - 1, 2)}-{any_day}"] if m2 > 1 else []
        alts.append(f"{y2:04d}-{m2:02d}-{_digits(1, d2, 2)}")
    return "^(?:" + "|".join(alts) + ")$"


def day_bounds(day: dt.date) -> tuple[int, int]:
    """[start, end) of a UTC day in epoch seconds."""
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
    return start, start + 86_400


_NO_HARD_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def link_or_copy(src: str | Path, dest: str | Path) -> None:
    """`dest` holds `src`'s bytes: a hard link, or a copy where the filesystem takes no link (a cache on its
    own volume). Made under a name of its own, then renamed onto `dest`: whatever `dest` was (a link to
    other bytes, another task's copy made a moment ago) is replaced, never written through, and a reader
    never sees half a copy."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINK:
                raise
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def epoch_seconds(ts) -> np.ndarray:
    """UTC epoch seconds of a timestamp Series, whatever its stored unit (s, ms, us, ns)."""
    return ts.dt.as_unit("s").astype("int64").to_numpy()


def project_path(path: str | Path) -> Path:
    """Relative paths in params.yaml are relative to the project root, whatever the cwd."""
    path = Path(path)
    return path if path.is_absolute() else PROJECT_ROOT / path


@dataclass(frozen=True)
class Layout:
    """Where each partition and artifact lives under the data root (docs/architecture.md)."""

    root: Path

    @classmethod
    def default(cls) -> Layout:
        from tasks.settings import settings

        return cls(project_path(settings().data))

    def raw(self, day: dt.date) -> Path:
        return self.root / "raw" / "events" / f"date={day_str(day)}"

    def raw_events_root(self) -> Path:
        return self.root / "raw" / "events"

    def deliveries(self, day: dt.date) -> Path:
        """Every delivery of day D ever ingested, side by side by content hash (`<sha12>/`)."""
        return self.root / "raw" / "deliveries" / f"date={day_str(day)}"

    def quarantine(self, day: dt.date) -> Path:
        return self.root / "quarantine" / f"date={day_str(day)}"

    def items(self, day: dt.date) -> Path:
        """The item catalogue as the upstream app knew it on `day`."""
        return self.root / "raw" / "items" / f"date={day_str(day)}"

    def features(self) -> Path:
        return self.root / "features"

    def reports(self, kind: str, day: dt.date) -> Path:
        return self.root / "reports" / kind / f"date={day_str(day)}"

    def index(self, kind: str, day: dt.date | None = None) -> Path:
        """A derived index of the history (e.g. `event_keys`), as it stood after `day`; without a day, its folder."""
        folder = self.root / "index" / kind
        return folder if day is None else folder / f"date={day_str(day)}"

    def run(self, day: dt.date) -> Path:
        return self.root / "runs" / f"date={day_str(day)}"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path: Path, obj: Any) -> Path:
    """Write JSON atomically: readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_secret(path: Path, text: str) -> Path:
    """Write a secret file that is 0600 from its first byte (never briefly readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def read_json(path: Path) -> Any:
    with path.open() as f:
        return json.load(f)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a scratch dir that replaces `target` only if the block finishes.

    A crash midway leaves `target` as it was (old content or absent), never half-written.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def intra_op_threads(n: int | None):
    """Run the block at `n` torch intra-op threads (None: the process's count) and put the count back after.
    The count is the process's, and it changes a training's bits (a reduction's sums are split by thread):
    a training later in the same process would otherwise run at this block's count."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def git_commit() -> str:
    """The code version for lineage; `unknown` outside a git checkout."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def port_open(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port` (a local server of ours, or another program)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def local_server_cli(argv, doc: str, factory, default_port: int, default_state: Path, started) -> None:
    """`python -m tasks.<server> start|stop|status|env` for a local server (tasks/s3.py, tasks/postgres.py):
    `factory(state_dir, port)` makes it; `started(server)` is the line printed once it runs. `env` prints
    shell exports, secrets included, to stdout only, for `eval`."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["start", "stop", "env", "status"])
    ap.add_argument("--port", type=int, default=default_port)
    ap.add_argument("--state-dir", type=Path, default=default_state)
    args = ap.parse_args(argv)
    server = factory(args.state_dir.resolve(), args.port)
    try:
        if args.command == "start":
            server.start()
            print(started(server))
        elif args.command == "stop":
            server.stop()
        elif args.command == "status":
            print("running" if server.running() else "stopped")
        else:
            for k, v in server.env().items():
                print(f"export {k}='{v}'")
    except FreshrecError as exc:
        raise SystemExit(f"{args.command}: {exc}") from None
