"""Serving follows the champion pointer: loads the verified champion, hot-swaps on a promotion,
and keeps serving the current model when the pointer names a tampered version."""

from __future__ import annotations

import json

import pytest

from serve.champion import ChampionFollower
from tasks.registry import IntegrityError

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_follower_loads_hot_swaps_and_refuses_tampered(bootstrapped, registry, tmp_path):
    follower = ChampionFollower(registry, tmp_path / "cache")
    assert follower.refresh()
    first = follower.current.version
    assert first == bootstrapped["champion"]
    history = follower.current.item_ids[:5]
    recs = follower.recommend(history)
    assert len(recs) == 10
    assert all(item in follower.current.index for item, _ in recs)
    assert not {item for item, _ in recs} & set(history)  # export.exclude_seen: nothing the user has seen
    seen = history + [item for item, _ in recs[:5]]  # the user watches the top five: they are not served again
    assert not {item for item, _ in follower.recommend(seen)} & set(seen)
    assert not follower.refresh()  # same pointer: nothing reloaded

    # a new version (same weights, int8 graph as the served file) is promoted: hot swap
    src = tmp_path / "v2"
    registry.download(first, src)
    manifest = json.loads((src / "manifest.json").read_text())
    files = {name: src / name for name in manifest["files"]}
    files["model.onnx"] = src / "model.int8.onnx"
    registry.publish("2099-01-01-feedbeef", files, {"serve_file": "model.onnx"})
    registry.set_champion("2099-01-01-feedbeef", "tester", "hot swap")
    assert follower.refresh()
    assert follower.current.version == "2099-01-01-feedbeef"
    assert len(follower.recommend(history)) == 10

    # a rogue pointer names a version whose file was altered in the store: refused, old model serves on
    registry.publish("2099-01-02-badc0ffe", files, {"serve_file": "model.onnx"})
    registry.s3.put_object(
        Bucket=registry.bucket, Key=registry.version_key("2099-01-02-badc0ffe", "model.onnx"), Body=b"not a model"
    )
    registry.s3.put_object(
        Bucket=registry.bucket,
        Key=f"{registry.prefix}/champion.json",
        Body=json.dumps({"version": "2099-01-02-badc0ffe", "serve_file": "model.onnx"}),
    )
    with pytest.raises(IntegrityError):
        follower.refresh()
    assert follower.current.version == "2099-01-01-feedbeef"
    assert len(follower.recommend(history)) == 10
