"""The S3 model registry against a real SeaweedFS: immutable versions, verified downloads,
a compare-and-swap champion pointer, rollback, history."""

from __future__ import annotations

import hashlib
import json

import pytest

from tasks.common import FreshrecError
from tasks.registry import ConcurrentPromotion, IntegrityError


@pytest.fixture
def files(tmp_path):
    def make(tag: str) -> dict:
        d = tmp_path / tag
        d.mkdir()
        (d / "model.onnx").write_bytes(b"onnx-" + tag.encode() * 100)
        (d / "items.json").write_text(json.dumps(["1", "2", tag]))
        return {"model.onnx": d / "model.onnx", "items.json": d / "items.json"}

    return make


def test_publish_is_immutable_and_idempotent(registry, files):
    f = files("a")
    m1 = registry.publish("2024-01-01-aaaa", f, {"approver": "x"})
    m2 = registry.publish("2024-01-01-aaaa", f, {"approver": "y"})  # same bytes again: no-op
    assert m1["files"] == m2["files"]
    assert m1["files"]["model.onnx"]["sha256"] == hashlib.sha256(f["model.onnx"].read_bytes()).hexdigest()
    f["model.onnx"].write_bytes(b"other bytes")
    with pytest.raises(IntegrityError, match="immutable"):
        registry.publish("2024-01-01-aaaa", f, {})
    assert registry.versions() == ["2024-01-01-aaaa"]


def test_pointer_moves_last_and_rollback_restores(registry, files, tmp_path):
    registry.publish("2024-01-01-aaaa", files("a"), {})
    registry.publish("2024-01-02-bbbb", files("b"), {})
    assert registry.pointer() == (None, None)
    registry.set_champion("2024-01-01-aaaa", "alice", "first")
    rec = registry.set_champion("2024-01-02-bbbb", "bob", "better")
    assert rec["previous"] == "2024-01-01-aaaa"
    back = registry.set_champion("2024-01-01-aaaa", "carol", "b regressed", action="rollback")
    assert registry.pointer()[0]["version"] == "2024-01-01-aaaa" and back["action"] == "rollback"
    assert [h["approver"] for h in registry.history()] == ["alice", "bob", "carol"]
    registry.download("2024-01-02-bbbb", tmp_path / "dl")
    assert json.loads((tmp_path / "dl" / "items.json").read_text())[-1] == "b"


def test_stale_pointer_write_is_refused(registry, files):
    """Compare-and-swap: a promotion that read the pointer before another one moved it changes nothing."""
    registry.publish("2024-01-01-aaaa", files("a"), {})
    registry.publish("2024-01-02-bbbb", files("b"), {})
    registry.set_champion("2024-01-01-aaaa", "alice", "first")
    _, stale_etag = registry.pointer()
    registry.set_champion("2024-01-02-bbbb", "bob", "concurrent")
    with pytest.raises(ConcurrentPromotion):
        registry.set_champion("2024-01-01-aaaa", "mallory", "late", expected_etag=stale_etag)
    assert registry.pointer()[0]["version"] == "2024-01-02-bbbb"


def test_tampered_artifact_is_rejected_everywhere(registry, files, tmp_path):
    """A file altered in the store fails download (nothing written) and cannot become champion."""
    registry.publish("2024-01-01-aaaa", files("a"), {})
    registry.publish("2024-01-02-bbbb", files("b"), {})
    registry.set_champion("2024-01-01-aaaa", "alice", "first")
    key = registry.version_key("2024-01-02-bbbb", "model.onnx")
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=b"evil")  # bypasses the registry
    with pytest.raises(IntegrityError, match="fails verification"):
        registry.download("2024-01-02-bbbb", tmp_path / "dl")
    assert not (tmp_path / "dl").exists()
    with pytest.raises(IntegrityError):
        registry.set_champion("2024-01-02-bbbb", "bob", "promote tampered")
    assert registry.pointer()[0]["version"] == "2024-01-01-aaaa"


def test_missing_version_is_a_clear_error(registry):
    with pytest.raises(FreshrecError, match="does not exist"):
        registry.set_champion("2099-01-01-ffff", "x", "y")


def test_lost_pointer_reply_is_settled_by_reading_back(registry, files):
    """The pointer write commits but its reply is lost: botocore retries and gets 412. Reading the
    pointer back shows our write: the promotion succeeded and is in the history."""
    from botocore.exceptions import ReadTimeoutError
    from botocore.httpsession import URLLib3Session

    registry.publish("2024-01-01-aaaa", files("a"), {})
    registry.publish("2024-01-02-bbbb", files("b"), {})
    registry.set_champion("2024-01-01-aaaa", "alice", "first")
    lost = []

    def lose_reply(request, **_):  # a fault a real server cannot produce on demand
        if request.method == "PUT" and request.url.split("?")[0].endswith("/champion.json") and not lost:
            URLLib3Session().send(request)  # the write reaches the server and commits ...
            lost.append(request.url)
            raise ReadTimeoutError(endpoint_url=request.url)  # ... but the reply never arrives

    registry.s3.meta.events.register("before-send.s3.PutObject", lose_reply)
    record = registry.set_champion("2024-01-02-bbbb", "bob", "better")
    assert lost, "the fault was not injected"
    assert registry.pointer()[0] == record and record["version"] == "2024-01-02-bbbb"
    assert [h["approver"] for h in registry.history()] == ["alice", "bob"]


def test_history_never_misses_a_pointer_move(registry, files, monkeypatch):
    """Killed between the pointer write and the history write: the next move records it first."""
    for v in ("2024-01-01-aaaa", "2024-01-02-bbbb", "2024-01-03-cccc"):
        registry.publish(v, files(v[-4:]), {})
    registry.set_champion("2024-01-01-aaaa", "alice", "first")
    real = registry._put_new

    def killed_at_history(key, body, sha=None):
        if "/promotions/" in key and b"2024-01-02-bbbb" in body:
            raise SystemExit("killed")
        return real(key, body, sha)

    monkeypatch.setattr(registry, "_put_new", killed_at_history)
    with pytest.raises(SystemExit):
        registry.set_champion("2024-01-02-bbbb", "bob", "daily")
    monkeypatch.setattr(registry, "_put_new", real)
    assert registry.pointer()[0]["version"] == "2024-01-02-bbbb"
    registry.set_champion("2024-01-03-cccc", "carol", "daily")
    assert [h["version"] for h in registry.history()] == ["2024-01-01-aaaa", "2024-01-02-bbbb", "2024-01-03-cccc"]


def _rewrite_consistently(registry, version: str, name: str, data: bytes) -> None:
    """An attacker with store access rewrites a file and its manifest entry together."""
    key = registry.version_key(version, name)
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=data)
    manifest = registry.manifest(version)
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    registry.s3.put_object(Bucket=registry.bucket, Key=registry.version_key(version, "manifest.json"), Body=body)


def test_a_version_rewritten_with_its_manifest_is_refused_end_to_end(registry, files, tmp_path):
    """Per-file checks pass (file and manifest entry agree) but the manifest is not the one the pointer
    recorded: serving, rollback and pulling the champion all refuse it."""
    from serve.champion import ChampionFollower

    registry.publish("2024-01-01-aaaa", files("a"), {})
    registry.publish("2024-01-02-bbbb", files("b"), {})
    registry.set_champion("2024-01-01-aaaa", "alice", "first")
    registry.set_champion("2024-01-02-bbbb", "bob", "daily")
    for version in ("2024-01-01-aaaa", "2024-01-02-bbbb"):
        _rewrite_consistently(registry, version, "items.json", b'["evil"]')
    registry.download("2024-01-02-bbbb", tmp_path / "naive")  # what a per-file check alone lets through
    follower = ChampionFollower(registry, tmp_path / "serve")
    assert not follower.poll() and follower.current is None  # refused, never served
    assert "not the one recorded" in next(iter(follower.refused.values()))
    with pytest.raises(IntegrityError, match="not the one recorded"):
        registry.set_champion("2024-01-01-aaaa", "carol", "roll back", action="rollback")
    with pytest.raises(IntegrityError, match="not the one recorded"):
        registry.download(
            "2024-01-02-bbbb", tmp_path / "pull", manifest_sha256=registry.recorded_manifest_sha("2024-01-02-bbbb")
        )
    assert registry.pointer()[0]["version"] == "2024-01-02-bbbb"


def test_status_lists_a_version_without_manifest_apart(registry, files, kill_upload_of, capsys, write_params, params):
    """A promotion killed mid-upload leaves files without a manifest: `tasks.promote status` lists it as
    incomplete, never among the versions."""
    from tasks.promote import main as promote_cli

    registry.publish("v1", files("a"), {})
    revive = kill_upload_of("model.onnx")
    with pytest.raises(SystemExit):
        registry.publish("v2", files("b"), {})
    revive()
    write_params(params)
    promote_cli(["status"])
    out = json.loads(capsys.readouterr().out)
    assert out["versions"] == ["v1"] and out["incomplete"] == ["v2"]


def test_a_rejection_recorded_again_after_a_kill_is_one_entry(registry, params, layout):
    """summarize_run killed after recording a rejection runs again: the history keeps one entry for the
    approver's answer, not one per try."""
    import datetime as dt

    from tasks.promotion import reject

    day, answered = dt.date(1998, 3, 2), "1998-03-02T09:15:00.123456+00:00"
    first = reject(day, params, layout, "ana", "cold-start HR halved", "evidence", answered_at=answered)
    again = reject(day, params, layout, "ana", "cold-start HR halved", "evidence", answered_at=answered)
    assert first == again and first["at"] == "1998-03-02T09:15:00.123456Z"
    assert [h["action"] for h in registry.history()] == ["reject"]
    reject(day, params, layout, "nobody", "no answer in time", None)  # no answer: recorded when it happens
    assert [h["action"] for h in registry.history()] == ["reject", "reject"]
