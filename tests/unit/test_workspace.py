"""Tasks that share one machine (tasks/workspace.py, tasks/day.py `task_scope`), against a real SeaweedFS:
each try works in a directory of its own over a shared, verified blob cache, so a pull that refreshes or
drops a unit in one task never deletes or changes a file another task is using; a try killed with
SIGKILL leaves nothing that lasts; a blob changed behind the cache's back is never handed on."""

from __future__ import annotations

import datetime as dt
import errno
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from tasks.day import task_scope
from tasks.store import Store

D = dt.date(1998, 3, 1)
UNIT = "raw/items/date=1998-03-01"


def _publish(store: Store, root, text: str) -> None:
    (root / UNIT).mkdir(parents=True, exist_ok=True)
    (root / UNIT / "items.parquet").write_text(text)
    store.push(root, UNIT)


def test_tasks_at_once_on_one_machine_never_touch_each_others_files(s3_env, params, tmp_path):
    """Three tasks run at once on one worker (the issue: a daily task's pull deleted the files the
    bootstrap had not pushed yet, and another day's catalogue). Each sees its own snapshot, whatever the
    others pull, refresh or drop, and its own unpushed outputs stay."""
    data = tmp_path / "data"
    upstream = Store.from_env(params)
    _publish(upstream, tmp_path / "up", "catalogue v1")
    with (
        task_scope("bootstrap", D, params, data) as (boot, _),
        task_scope("train_challenger", D, params, data) as (train, store_a),
        task_scope("validate_events", D, params, data) as (validate, store_b),
    ):
        assert len({boot.root, train.root, validate.root}) == 3 and all(
            p.root.parent == data / ".cache" / "tasks" for p in (boot, train, validate)
        )
        (boot.root / "reports/drift/date=1998-02-28").mkdir(parents=True)
        (boot.root / "reports/drift/date=1998-02-28/drift.json").write_text("{}")  # not pushed yet
        store_a.pull(train.root, UNIT)
        held = train.root / UNIT / "items.parquet"
        _publish(upstream, tmp_path / "up", "catalogue v2")  # a re-delivery lands meanwhile
        store_b.pull(validate.root, UNIT)
        store_b.pull_children(validate.root, "reports/drift")  # none stored: drops local ones, its own only
        assert (validate.root / UNIT / "items.parquet").read_text() == "catalogue v2"
        assert held.read_text() == "catalogue v1", "a pull in another task changed this task's input"
        upstream.remove(UNIT)
        store_b.pull(validate.root, UNIT, required=False)  # gone from the store: gone from that task only
        assert not (validate.root / UNIT).exists() and held.read_text() == "catalogue v1"
        assert (boot.root / "reports/drift/date=1998-02-28/drift.json").exists()
        blob = data / ".cache" / "blobs"
        assert os.stat(held).st_ino in {p.stat().st_ino for p in blob.rglob("*") if p.is_file()}, "not linked"
    assert not list((data / ".cache" / "tasks").iterdir()), "a finished try leaves its directory behind"


def test_a_blob_changed_in_the_cache_is_fetched_again(s3_env, params, tmp_path):
    """The cache is shared by every task on the machine: a blob whose bytes changed (a step writing into a
    pulled file, a bad disk) is never linked into a task; the pull fetches the stored bytes again."""
    data = tmp_path / "data"
    _publish(Store.from_env(params), tmp_path / "up", "catalogue v1")
    with task_scope("a", D, params, data) as (layout, store):
        store.pull(layout.root, UNIT)
        blob = next(p for p in (data / ".cache" / "blobs").rglob("*") if p.is_file())
    blob.chmod(0o644)
    blob.write_text("catalogue XX")  # same size, other bytes
    with task_scope("b", D, params, data) as (layout, store):
        store.pull(layout.root, UNIT)
        assert (layout.root / UNIT / "items.parquet").read_text() == "catalogue v1"


def test_a_killed_try_leaves_nothing_behind_for_long(s3_env, params, tmp_path):
    """A try killed with SIGKILL cannot clean up; the next try on the machine removes its directory (its
    lock is free), and never one of a try that is still alive."""
    data = tmp_path / "data"
    code = textwrap.dedent(
        f"""
        import datetime as dt, pathlib, sys, time, yaml
        from tasks.day import task_scope
        params = yaml.safe_load(open({str(tmp_path / "p.yaml")!r}))
        with task_scope("killed", dt.date(1998, 3, 1), params, pathlib.Path({str(data)!r})) as (layout, _):
            (layout.root / "half-written").write_text("x")
            print(layout.root, flush=True)
            time.sleep(600)
        """
    )
    import yaml

    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        left = proc.stdout.readline().strip()
        with task_scope("alive-check", D, params, data):
            assert os.path.isdir(left), "a live try's directory was removed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert os.path.isdir(left)
        with task_scope("next", D, params, data):
            assert not os.path.exists(left)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_scratch_is_swept_by_the_next_one(tmp_path, monkeypatch):
    """The DVC scratch of `version_training` and `reproduce` (tasks/versioning.py) lives outside the checkout,
    under the system's temp dir; a process killed holding one leaves it there, and the next scratch made on
    the machine removes it, never one that is still held. (It was a plain `mkdtemp` that lasted for ever.)"""
    from tasks.workspace import scratch_dir

    code = textwrap.dedent(
        """
        import time
        from tasks.workspace import scratch_dir
        with scratch_dir("dvc") as path:
            (path / "half-written").write_text("x")
            print(path, flush=True)
            time.sleep(600)
        """
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    try:
        left = pathlib.Path(proc.stdout.readline().strip())
        assert left.parent == tmp_path / f"freshrec-scratch-{os.getuid()}"
        with scratch_dir("dvc"):
            assert left.is_dir(), "a live scratch was removed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert left.is_dir()
        with scratch_dir("dvc") as path:
            assert not left.exists() and path.parent == left.parent
        assert not path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_lock_swept_before_it_is_taken_is_made_again_never_a_lockless_directory(tmp_path, monkeypatch):
    """Another try's sweep can take a new lock file in the instant before its owner locks it, and remove
    it as a dead try's. The owner then makes another: it neither fails nor leaves a directory without a
    lock, which no later sweep would ever remove (a trigger's look left one in CI)."""
    from tasks import workspace

    tasks_dir, made = workspace.cache_root(tmp_path) / "tasks", []
    real = workspace.tempfile.mkstemp

    def raced(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        made.append(name)
        if len(made) == 1:  # the sweep of a try starting at the same instant, before the lock is taken
            workspace._sweep(tasks_dir)
        return fd, name

    monkeypatch.setattr(workspace.tempfile, "mkstemp", raced)
    with workspace.task_workspace(tmp_path, "raced") as layout:
        assert (layout.root / workspace.LOCK).is_file()
        workspace._sweep(tasks_dir)  # a live try's directory stays
        assert layout.root.is_dir()
    assert len(made) == 2, made
    assert list(tasks_dir.iterdir()) == []


def test_a_directory_left_without_its_lock_is_swept_once_old(tmp_path):
    """A try killed between making its directory and moving its lock in leaves a directory no lock
    protects: a later sweep removes it once it is old, never one that is starting now."""
    from tasks import workspace

    tasks_dir = workspace.cache_root(tmp_path) / "tasks"
    old, starting = tasks_dir / "killed-starting-x", tasks_dir / "starting-now-y"
    for path in (old, starting):
        (path / "runs").mkdir(parents=True)
    past = time.time() - workspace.LOCKLESS_AFTER - 60
    os.utime(old, (past, past))
    with workspace.task_workspace(tmp_path, "next"):
        assert not old.exists()
        assert starting.is_dir()


def test_many_tries_pulling_one_unit_at_once_all_get_it_whole(s3_env, params, tmp_path):
    """Tries that add the same blob to the cache at the same moment each end with the whole, verified file."""
    data = tmp_path / "data"
    _publish(Store.from_env(params), tmp_path / "up", "x" * 2_000_000)
    code = textwrap.dedent(
        f"""
        import datetime as dt, pathlib, yaml
        from tasks.day import task_scope
        params = yaml.safe_load(open({str(tmp_path / "p.yaml")!r}))
        with task_scope("t", dt.date(1998, 3, 1), params, pathlib.Path({str(data)!r})) as (layout, store):
            store.pull(layout.root, {UNIT!r})
            assert (layout.root / {UNIT!r} / "items.parquet").read_text() == "x" * 2_000_000
        """
    )
    import yaml

    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    n, t0 = 4, time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", code], env=os.environ) for _ in range(n)]
    assert [p.wait(120) for p in procs] == [0] * n, f"after {time.monotonic() - t0:.1f}s"


def test_a_link_made_at_the_same_instant_is_replaced_never_written_through(tmp_path, monkeypatch):
    """Two tasks link the same file into place at once (a Data Docs site's vendored files, a unit from the
    blob cache). The other's link lands between this one's checks: `dest` is then a second name of other
    bytes, which must be replaced, not copied over (that would change those bytes under every name)."""
    from tasks import common

    src, other, dest = tmp_path / "src", tmp_path / "other", tmp_path / "dest"
    src.write_text("new bytes")
    other.write_text("another file's bytes")
    link = os.link

    def raced(a, b):  # the other task's link lands first
        if not dest.exists():
            link(other, dest)
        link(a, b)

    monkeypatch.setattr(common.os, "link", raced)
    common.link_or_copy(src, dest)
    assert dest.read_text() == "new bytes"
    assert other.read_text() == "another file's bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "other", "src"]  # no scratch left


def _link_fails(code: int):
    def link(src, dest):
        raise OSError(code, os.strerror(code))

    return link


def test_a_copy_where_no_link_is_possible_is_put_in_place_whole(tmp_path, monkeypatch):
    """Another filesystem (EXDEV): a copy, renamed onto `dest`; any other error is raised, not papered over."""
    from tasks import common

    src, dest = tmp_path / "src", tmp_path / "dest"
    src.write_text("bytes")
    monkeypatch.setattr(common.os, "link", _link_fails(errno.EXDEV))
    common.link_or_copy(src, dest)
    assert dest.read_text() == "bytes" and dest.stat().st_ino != src.stat().st_ino
    monkeypatch.setattr(common.os, "link", _link_fails(errno.ENOSPC))
    with pytest.raises(OSError, match="No space left"):
        common.link_or_copy(src, tmp_path / "again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "src"]
