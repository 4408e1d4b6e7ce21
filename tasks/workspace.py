"""A worker's disk, safe for tasks that run at once on one machine.

    <cache>/blobs/<sha[:2]>/<sha256>    content-addressed bytes pulled from the object store (shared)
    <cache>/tasks/<day>-<step>-<id>/    one task try's private working directory (its `Layout` root)

Every task try works in a directory of its own: it pulls its declared inputs there, writes its
outputs there, pushes them, and the directory goes when the try ends. Tasks on one machine
(LocalExecutor, a Celery worker with several slots, a laptop) therefore never delete or overwrite
each other's files, whatever they pull or remove.

What makes that cheap is the blob cache beside it: a pulled file is a hard link to its verified blob,
so a unit that three tasks pull is downloaded once. Blobs are only ever added (written to a scratch
name, fsynced, renamed), never changed or removed while a try runs. Steps write new files (atomic
writes, `atomic_dir`), never into a pulled file, and every link re-checks the blob's sha256, so even a
blob changed behind the cache's back is fetched again rather than handed on.

A try killed by SIGKILL leaves its directory behind; it holds an exclusive `flock` on `.lock` while
alive, so the next try on the machine finds directories whose lock it can take and removes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tasks.common import Layout, link_or_copy, sha256_file

LOG = logging.getLogger(__name__)
LOCK = ".lock"
LOCKLESS_AFTER = 600.0  # s: a try's directory gets its lock within microseconds of being made


@dataclass(frozen=True)
class BlobCache:
    """Verified, content-addressed copies of stored blobs on this machine, shared by every task."""

    root: Path

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def link(self, sha: str, size: int, dest: Path) -> bool:
        """Make `dest` a link to blob `sha` if the cache holds it intact; False if it does not."""
        blob = self.path(sha)
        try:
            if blob.stat().st_size != size or sha256_file(blob) != sha:
                return False
        except FileNotFoundError:
            return False
        link_or_copy(blob, dest)
        return True

    def add(self, sha: str, data: bytes, dest: Path) -> None:
        """Keep verified bytes `data` as blob `sha` and link `dest` to it. Two tasks adding the same blob
        at once each write their own scratch file; the rename makes one of them the blob, whole."""
        blob = self.path(sha)
        blob.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=blob.parent, prefix=f".{sha[:12]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, blob)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        link_or_copy(blob, dest)


def cache_root(data_root: Path) -> Path:
    """The worker cache beside its data root (a dot-folder: never taken for a unit)."""
    return data_root / ".cache"


def _sweep(tasks_dir: Path) -> None:
    """Remove the directories of tries that died without cleaning up (their lock is free). A live try
    locks its lock file before the file appears in its directory, so a lock found there and free is a
    dead owner's, never a try that is still starting. A directory without a lock is a try starting (for
    microseconds) or one killed in that instant: removed once it is `LOCKLESS_AFTER` old."""
    if not tasks_dir.is_dir():
        return
    for path in tasks_dir.iterdir():
        lock = path / LOCK if path.is_dir() else path
        if path.is_dir() and not lock.exists():  # still starting (its lock is not in place yet), or being removed,
            with contextlib.suppress(FileNotFoundError):  # or its try was killed in that microsecond
                if time.time() - path.stat().st_mtime > LOCKLESS_AFTER:
                    LOG.info("removing %s, left without its lock by a task try that died starting", path)
                    shutil.rmtree(path, ignore_errors=True)
            continue
        if not path.is_dir() and not path.name.startswith(".lock-"):
            continue
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:  # its owner is removing it right now
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # alive
        else:
            if path.is_dir():
                LOG.info("removing %s, left by a task try that died", path)
                shutil.rmtree(path, ignore_errors=True)
            else:  # a lock file whose try died before its directory existed
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _held_lock(tasks_dir: Path) -> tuple[int, str]:
    """A new `.lock-*` file in `tasks_dir`, exclusively locked by this process. In the instant between
    creating the file and locking it, a sweeper (another try, or another thread of this process) can
    take the free lock and remove the file as a dead try's; then the lock is on no name, and this makes
    another."""
    while True:
        fd, held = tempfile.mkstemp(dir=tasks_dir, prefix=".lock-")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a sweeper has it, and is removing it
            if os.path.samestat(os.fstat(fd), os.stat(held)):  # still this name: no sweeper took it, none can now
                return fd, held
        except (BlockingIOError, FileNotFoundError):
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def locked_dir(parent: Path, name: str) -> Iterator[Path]:
    """A new directory under `parent`, held by this process's lock and removed when the block ends; one whose
    process was killed is removed by the next one made under `parent` (its lock is free then)."""
    parent.mkdir(parents=True, exist_ok=True)
    _sweep(parent)
    safe = re.sub(r"[^A-Za-z0-9_.=-]", "_", name)[:80]
    fd, held = _held_lock(parent)  # locked before its directory exists, so no sweeper takes that
    try:
        path = Path(tempfile.mkdtemp(dir=parent, prefix=f"{safe}-"))
        try:
            os.replace(held, path / LOCK)
        except BaseException:
            path.rmdir()  # no directory left without its lock (a sweep would take 10 minutes to remove it)
            raise
    except BaseException:
        Path(held).unlink(missing_ok=True)
        os.close(fd)
        raise
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


@contextlib.contextmanager
def task_workspace(data_root: Path, name: str) -> Iterator[Layout]:
    """A private `Layout` for one task try under `data_root`'s cache; removed when the block ends
    (by a later try's sweep if this process is killed)."""
    with locked_dir(cache_root(data_root) / "tasks", name) as path:
        yield Layout(path)


def scratch_dir(name: str) -> contextlib.AbstractContextManager[Path]:
    """A scratch directory outside any checkout (a DVC repo made inside the project's git tree would find
    that tree's root): under the system's temp dir, one parent per user (a sweep opens only its own user's
    locks), swept like a task's directory when its process dies."""
    return locked_dir(Path(tempfile.gettempdir()) / f"freshrec-scratch-{os.getuid()}", name)
