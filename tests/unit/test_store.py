"""The object-store data plane against a real SeaweedFS: units round-trip byte for byte, a push
killed midway leaves the previous snapshot whole, a missing input names its writer, a cache never
keeps what the store dropped, altered bytes are refused, and gc reclaims only what nothing lists."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import time

import pytest

from tasks.common import FreshrecError
from tasks.registry import IntegrityError
from tasks.store import MissingInput, Store
from tests.conftest import ROOT


@pytest.fixture
def store(s3_env, params):
    return Store.from_env(params)


def _unit(root, rel, files: dict[str, bytes]):
    d = root / rel
    d.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


def test_units_round_trip_between_two_disks(store, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _unit(a, "runs/date=2024-01-01/challenger", {"weights.safetensors": b"w" * 1000, "config.json": b"{}"})
    (a / "runs/date=2024-01-01/evaluation.json").write_text('{"gate": 1}')
    store.push(a, "runs/date=2024-01-01/challenger")
    store.push(a, "runs/date=2024-01-01/evaluation.json")
    assert store.pull(b, "runs/date=2024-01-01/challenger")
    assert store.pull(b, "runs/date=2024-01-01/evaluation.json")
    assert (b / "runs/date=2024-01-01/challenger/weights.safetensors").read_bytes() == b"w" * 1000
    assert (b / "runs/date=2024-01-01/evaluation.json").read_text() == '{"gate": 1}'


def test_killed_push_leaves_the_previous_snapshot(store, tmp_path, monkeypatch):
    """A push dies after uploading one of two new files: readers still get the old unit, whole."""
    a, b = tmp_path / "a", tmp_path / "b"
    _unit(a, "u", {"x": b"old-x", "y": b"old-y"})
    store.push(a, "u")
    _unit(a, "u", {"x": b"new-x", "y": b"new-y"})
    real, calls = store._put_blob, []

    def dying(path, sha):
        calls.append(path.name)
        if len(calls) == 2:
            raise SystemExit("killed")  # the worker dies mid-push
        real(path, sha)

    monkeypatch.setattr(store, "_put_blob", dying)
    with pytest.raises(SystemExit):
        store.push(a, "u")
    store.pull(b, "u")
    assert {p.name: p.read_bytes() for p in (b / "u").iterdir()} == {"x": b"old-x", "y": b"old-y"}


def test_missing_input_names_the_task_that_writes_it(store, tmp_path):
    with pytest.raises(MissingInput, match="`pull_champion` task writes it"):
        store.pull(tmp_path, "runs/date=2024-01-01/champion", writer="pull_champion")
    assert store.pull(tmp_path, "runs/date=2024-01-01/champion", required=False) is False


def test_cache_drops_what_the_store_dropped(store, tmp_path):
    """A day quarantined on another worker must not linger in this worker's history."""
    a, b = tmp_path / "a", tmp_path / "b"
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        _unit(a, f"raw/events/date={day}", {"events.parquet": day.encode()})
        store.push(a, f"raw/events/date={day}")
    assert store.pull_children(b, "raw/events") == ["date=2024-01-01", "date=2024-01-02", "date=2024-01-03"]
    store.remove("raw/events/date=2024-01-02")  # quarantined elsewhere
    kept = store.pull_children(b, "raw/events", keep=lambda n: n <= "date=2024-01-03")
    assert kept == ["date=2024-01-01", "date=2024-01-03"]
    assert sorted(p.name for p in (b / "raw/events").iterdir()) == kept


def test_altered_bytes_are_refused(store, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _unit(a, "u", {"x": b"good"})
    snap = store.push(a, "u")
    sha = snap["files"]["x"]["sha256"]
    store.s3.put_object(Bucket=store.bucket, Key=store._blob_key(sha), Body=b"evil")
    with pytest.raises(IntegrityError, match="missing or altered"):
        store.pull(b, "u")
    assert not (b / "u").exists()


@pytest.mark.parametrize("damage", [b"evil", b"go0d", b""])  # other bytes: longer, same size, truncated
def test_re_running_the_writer_repairs_an_altered_blob(store, tmp_path, damage):
    """A blob overwritten in the store is refused on pull; pushing the unit again (a re-run of the task that
    wrote it) writes the blob again instead of trusting that a blob under that name holds its bytes."""
    a, b = tmp_path / "a", tmp_path / "b"
    _unit(a, "u", {"x": b"good"})
    sha = store.push(a, "u")["files"]["x"]["sha256"]
    store.s3.put_object(Bucket=store.bucket, Key=store._blob_key(sha), Body=damage)
    with pytest.raises(IntegrityError):
        store.pull(b, "u")
    store.push(a, "u")
    store.pull(b, "u")
    assert (b / "u" / "x").read_bytes() == b"good"


def _blobs(store) -> set[str]:
    listing = store.s3.list_objects_v2(Bucket=store.bucket, Prefix=f"{store.prefix}/blobs/")
    return {o["Key"].rsplit("/", 1)[-1] for o in listing.get("Contents", [])}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_gc_deletes_what_stayed_unlisted_for_its_grace_and_never_what_a_push_lists_again(store, tmp_path):
    """gc beside running tasks (a grace of 1 s here; 24 h by default): a first gc deletes nothing and records
    what no unit lists; the next, a grace later, deletes what is still unlisted and older than the grace.
    A blob that became unlisted after the first gc waits for the next (a reader may still be fetching it),
    and one a push lists again between a gc's mark and its sweep survives (the push freshened it)."""
    store = dataclasses.replace(store, freshen_seconds=0, push_seconds=0)
    a, b = tmp_path / "a", tmp_path / "b"
    _unit(a, "u", {"x": b"v1-x", "y": b"same"})
    store.push(a, "u")
    _unit(a, "u", {"x": b"v2-x", "y": b"same"})
    store.push(a, "u")  # v1-x is superseded
    _unit(a, "r", {"z": b"reused"})
    store.push(a, "r")
    store.remove("r")  # a checkpoint cleared, say: "reused" is listed nowhere
    first = store.sweep(store.mark(), grace_seconds=1)
    assert (first["deleted"], first["waiting"]) == (0, 2) and _sha(b"v1-x") in _blobs(store)
    _unit(a, "late", {"w": b"late"})
    store.push(a, "late")
    store.remove("late")  # unlisted only after the first gc
    time.sleep(2.2)
    marked = store.mark()
    dry = store.sweep(marked, grace_seconds=1, dry_run=True)  # at the mark, v1-x and "reused" are due
    assert dry["deleted"] == 2 and {_sha(b"v1-x"), _sha(b"reused")} <= _blobs(store)  # and nothing was done
    _unit(a, "r2", {"z": b"reused"})
    store.push(a, "r2")  # a task lists "reused" again between the mark and the sweep
    done = store.sweep(marked, grace_seconds=1)
    assert (done["deleted"], done["deleted_bytes"], done["waiting"]) == (1, 4, 2)
    assert _sha(b"v1-x") not in _blobs(store)
    assert {_sha(b"reused"), _sha(b"late"), _sha(b"v2-x"), _sha(b"same")} <= _blobs(store)
    for rel in ("u", "r2"):
        assert store.pull(b, rel)  # every listed unit is whole
    assert (b / "r2" / "z").read_bytes() == b"reused"
    time.sleep(2.2)
    later = store.sweep(store.mark(), grace_seconds=1)  # "late" has now been unlisted for a whole grace
    assert later["deleted"] == 1 and _sha(b"late") not in _blobs(store) and _sha(b"reused") in _blobs(store)


def test_gc_refuses_a_short_grace_and_an_unreadable_listing(store, tmp_path, write_params, params):
    """A grace shorter than freshening plus a push could delete a blob a task is listing again; a listing gc
    cannot read may list anything: both stop gc before it deletes anything."""
    write_params(params)  # the CLI's params (its bucket: this test's)
    a = tmp_path / "a"
    _unit(a, "u", {"x": b"v1"})
    store.push(a, "u")
    _unit(a, "u", {"x": b"v2"})
    store.push(a, "u")
    with pytest.raises(FreshrecError, match=r"grace of 60 s is shorter than .* give a longer grace"):
        store.sweep(store.mark(), grace_seconds=60)

    def cli(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "tasks.store", "gc", *args]
        return subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)

    short = cli("--grace-hours", "1")
    assert short.returncode == 1 and "error: gc: a grace of 3600 s is shorter" in short.stderr
    dry = cli("--dry-run")
    assert dry.returncode == 0, dry.stderr
    found = json.loads(dry.stdout)
    assert (found["units"], found["blobs"], found["deleted"], found["waiting"], found["dry_run"]) == (1, 2, 0, 1, True)
    store.s3.put_object(Bucket=store.bucket, Key="state/units/bad/UNIT.json", Body=b"<html>")
    with pytest.raises(FreshrecError, match=r"units/bad/UNIT\.json is not a unit listing.*nothing was deleted"):
        store.mark()
    assert _sha(b"v1") in _blobs(store)


def _aged(store, tmp_path, grace: float = 1) -> tuple:
    """A store whose blob of b"old" is unlisted and due for deletion at the next sweep (two gc runs a grace
    apart found it unlisted), with a mark taken: (store, mark)."""
    store = dataclasses.replace(store, freshen_seconds=0, push_seconds=0)
    a = tmp_path / "a"
    _unit(a, "keep", {"k": b"kept"})
    store.push(a, "keep")
    _unit(a, "u", {"x": b"old"})
    store.push(a, "u")
    store.remove("u")
    store.sweep(store.mark(), grace_seconds=grace)
    time.sleep(2.2)
    return store, store.mark()


def test_a_push_that_freshens_a_blob_after_the_sweep_listed_it_keeps_it(store, tmp_path, monkeypatch):
    """The sweep lists the blob with its old date; a push reuses it (and freshens it) before the sweep
    deletes it: the sweep's last look (a HEAD just before the DELETE) sees the new date and keeps it. The
    interleaving is injected: the push runs at the sweep's first HEAD."""
    import tasks.s3

    store, marked = _aged(store, tmp_path)
    real, pushed = tasks.s3.head_or_none, []

    def push_first(s3, bucket, key):
        if key.endswith(_sha(b"old")) and not pushed:
            pushed.append("u2")
            _unit(tmp_path / "b", "u2", {"x": b"old"})
            store.push(tmp_path / "b", "u2")
        return real(s3, bucket, key)

    monkeypatch.setattr(tasks.s3, "head_or_none", push_first)
    report = store.sweep(marked, grace_seconds=1)
    assert pushed and report["deleted"] == 0 and _sha(b"old") in _blobs(store)
    assert store.read("u2", "x") == b"old"


def test_a_blob_deleted_as_a_push_freshens_it_is_stored_again(store, tmp_path, monkeypatch, caplog):
    """The instant between a sweep's last look and its DELETE: the push that reused the blob finds it gone
    once its listing names it, and stores it again from its own bytes. The delete is injected right after
    the freshening copy."""
    store, _ = _aged(store, tmp_path)
    real = store.s3.copy_object

    def copy_then_gc(**kw):
        out = real(**kw)
        store.s3.delete_object(Bucket=store.bucket, Key=kw["Key"])  # the sweep's DELETE lands here
        return out

    monkeypatch.setattr(store.s3, "copy_object", copy_then_gc)
    _unit(tmp_path / "b", "u2", {"x": b"old"})
    store.push(tmp_path / "b", "u2")
    assert store.read("u2", "x") == b"old"
    assert "was deleted by a gc as it was listed again: storing it again" in caplog.text


def test_gc_refuses_what_it_cannot_do_safely(store, tmp_path, monkeypatch):
    """A delete the store refuses keeps the blob a candidate and fails the sweep, saying so; a store that
    lists no unit while blobs are stored (a wrong prefix, lost listings) deletes nothing; a second gc
    while one holds the lease refuses, and a lease a dead gc left is taken over."""
    from botocore.exceptions import ClientError

    import tasks.store

    store, marked = _aged(store, tmp_path)
    real = store.s3.delete_object

    def denied(**kw):
        if "/blobs/" in kw["Key"]:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DeleteObject")
        return real(**kw)

    monkeypatch.setattr(store.s3, "delete_object", denied)
    with pytest.raises(FreshrecError, match=r"refused 1 deletes \(e\.g\. .*: AccessDenied\): they stay candidates"):
        store.sweep(marked, grace_seconds=1)
    monkeypatch.setattr(store.s3, "delete_object", real)
    assert _sha(b"old") in _blobs(store)
    assert store.sweep(store.mark(), grace_seconds=1)["deleted"] == 1  # still due: its grace did not restart
    store.remove("keep")
    with pytest.raises(FreshrecError, match=r"lists no unit but 1 blobs are stored.*nothing was deleted"):
        store.sweep(store.mark(), grace_seconds=1)
    store.s3.put_object(Bucket=store.bucket, Key="state/gc/lease.json", Body=b'{"host": "elsewhere"}')
    with pytest.raises(FreshrecError, match=r"another gc holds .*lease\.json \(\{\"host\": \"elsewhere\"\}"):
        store.gc(grace_seconds=1)
    monkeypatch.setattr(tasks.store, "LEASE_SECONDS", 0)  # as if that gc had died hours ago
    _unit(tmp_path / "a", "keep", {"k": b"kept"})
    store.push(tmp_path / "a", "keep")
    assert store.gc(grace_seconds=1)["units"] == 1
    assert store._get("state/gc/lease.json") is None  # released
