"""The object-store data plane against a real SeaweedFS: units round-trip byte for byte, a push
killed midway leaves the previous snapshot whole, a missing input names its writer, a cache never
keeps what the store dropped, and altered bytes are refused."""

from __future__ import annotations

import pytest

from tasks.registry import IntegrityError
from tasks.store import MissingInput, Store


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
