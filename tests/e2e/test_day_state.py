"""The day's state machine on a real ML-100K slice against a real SeaweedFS, every step through
the object-store data plane (tasks/day.py): tasks on empty disks, a promotion killed mid-upload
and re-run, and the pointer that only moves forward from the champion a day was built on."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import yaml

from tasks.common import FreshrecError, Layout
from tasks.day import pull_champion, run_step
from tasks.store import MissingInput, Store
from tests.conftest import WARMUP_END

pytestmark = [pytest.mark.slow]


def _steps(day, params, layout, *, through="benchmark_latency"):
    """Run day D's steps up to `through`, each pulling its inputs from the store into `layout`."""
    from tasks import benchmark, drift, evaluate, export, ingest, replay, train, validate
    from tasks.promote import registry_from_env

    store = Store.from_env(params)
    replay.run(day, params)
    run_step("ingest_events", day, params, layout, ingest.run, day, params, layout, store=store)
    run_step("validate_events", day, params, layout, validate.run, day, params, layout, store=store)
    if through == "validate_events":
        return
    pull_champion(day, params, layout, store, registry_from_env(params))
    for name, fn, kw in (
        ("detect_drift", drift.run, {}),
        ("train_challenger", train.run, {"progress": False}),
        ("evaluate_challenger", evaluate.run, {}),
        ("export_onnx", export.run, {}),
        ("benchmark_latency", benchmark.run, {}),
    ):
        run_step(name, day, params, layout, fn, day, params, layout, store=store, **kw)
        if name == through:
            return


def _promote_cli(monkeypatch, data_dir, day, *extra):
    """`python -m tasks.promote promote --date D` on a machine whose disk is `data_dir`."""
    from tasks import promote

    monkeypatch.setenv("FRESHREC_DATA", str(data_dir))
    promote.main(["promote", "--date", str(day), "--approver", "ops", *extra])
    return json.loads((Layout(data_dir).run(day) / "promotion.json").read_text())


def test_a_task_on_a_partial_disk_refuses_instead_of_changing_its_decision(bootstrapped, tmp_path):
    """Drift on a worker that holds the day's data but whose champion was never pulled: a clear
    MissingInput naming pull_champion, never a silent "no champion yet: full retrain"."""
    params, day = bootstrapped["params"], bootstrapped["day1"]
    worker = Layout(tmp_path / "worker-a")
    _steps(day, params, worker, through="validate_events")
    from tasks import drift

    with pytest.raises(MissingInput, match="pull_champion"):
        run_step("detect_drift", day, params, worker, drift.run, day, params, worker)
    assert not (worker.reports("drift", day) / "drift.json").exists()


def test_killed_promotion_is_re_run_on_other_disks_and_converges(
    bootstrapped, registry, tmp_path, monkeypatch, kill_upload_of
):
    """Killed while uploading model.onnx (a version without manifest); the day is re-run from scratch
    on another worker's empty disk (it retrains), then promoted from a third: same version, promoted."""
    params, day = bootstrapped["params"], bootstrapped["day1"]
    _steps(day, params, Layout(tmp_path / "worker-a"))
    revive = kill_upload_of("model.onnx")
    with pytest.raises(SystemExit):
        _promote_cli(monkeypatch, tmp_path / "worker-b", day)
    revive()
    (half,) = [v for v in registry.versions() if v.startswith(str(day))]
    with pytest.raises(FreshrecError):
        registry.manifest(half)  # files without a manifest: not a version yet
    assert registry.pointer()[0]["version"] == bootstrapped["champion"]

    _steps(day, params, Layout(tmp_path / "worker-c"))  # the whole day again, on an empty disk
    record = _promote_cli(monkeypatch, tmp_path / "worker-d", day)
    assert record["status"] == "promoted" and record["version"] == half
    assert registry.manifest(half)["base"] == bootstrapped["champion"]
    assert registry.pointer()[0]["version"] == half
    again = _promote_cli(monkeypatch, tmp_path / "worker-e", day)  # a third run: a no-op
    assert again["status"] == "unchanged" and [h["version"] for h in registry.history()].count(half) == 1


def test_pointer_only_moves_forward_from_the_days_base(bootstrapped, registry, tmp_path, monkeypatch):
    """Day 2 builds on day 1's promoted version; re-promoting day 1 with day 2 live is a no-op; a
    challenger whose base is no longer live is refused; an older day never moves the pointer back."""
    from tasks.promote import main as promote_cli

    params, day1 = bootstrapped["params"], bootstrapped["day1"]
    day2, day3 = day1 + dt.timedelta(days=1), day1 + dt.timedelta(days=2)
    params["evaluate"]["max_ndcg_drop"] = 1.0  # tiny models: the quality gate is not under test here
    _steps(day1, params, Layout(tmp_path / "w1"))
    v1 = _promote_cli(monkeypatch, tmp_path / "w1", day1)["version"]
    _steps(day2, params, Layout(tmp_path / "w2"))
    v2 = _promote_cli(monkeypatch, tmp_path / "w2", day2)["version"]
    assert registry.manifest(v2)["base"] == v1  # day 2 built on the champion day 1 left

    again = _promote_cli(monkeypatch, tmp_path / "w3", day1)
    assert again["status"] == "already promoted" and registry.pointer()[0]["version"] == v2

    _steps(day3, params, Layout(tmp_path / "w3"))  # built on v2 ...
    promote_cli(["rollback", "--to", v1, "--approver", "ops", "--reason", "v2 regressed"])  # ... which goes away
    with pytest.raises(FreshrecError, match=f"built on and evaluated against {v2}"):
        _promote_cli(monkeypatch, tmp_path / "w4", day3)
    assert registry.pointer()[0]["version"] == v1

    promote_cli(["rollback", "--to", v2, "--approver", "ops", "--reason", "back to v2"])
    v3 = _promote_cli(monkeypatch, tmp_path / "w4", day3)["version"]
    assert registry.manifest(v3)["base"] == v2
    monkeypatch.setenv("FRESHREC_DATA", str(tmp_path / "w5"))
    store = Store.from_env(params)
    from tasks.day import OUTCOME

    store.remove(str(OUTCOME.path(Layout(tmp_path / "w5"), day3).relative_to(tmp_path / "w5")))
    with pytest.raises(FreshrecError, match="no recorded outcome"):  # day 4 waits for day 3's outcome
        pull_champion(day3 + dt.timedelta(days=1), params, Layout(tmp_path / "w5"), store, registry)
    assert registry.pointer()[0]["version"] == v3


def test_a_promoted_version_is_reproduced_through_dvc(bootstrapped, registry, capsys):
    """The bootstrap trained through the same train step as the DAG: DVC recorded its inputs and the
    challenger and pushed them (the days before it as their history unit); `python -m tasks.versioning
    reproduce` restores the inputs in a fresh workspace, retrains, and matches the version's weights byte
    for byte (CPU is deterministic)."""
    from tasks.versioning import main as versioning_cli

    manifest = registry.manifest(bootstrapped["champion"])
    dvc = manifest["lineage"]["dvc"]
    day_inputs = {f"data/index/history/date={WARMUP_END}.dvc", f"data/raw/events/date={WARMUP_END}.dvc"}
    assert {"dvc.yaml", "dvc.lock", "params.yaml", *day_inputs} <= set(dvc)  # the history unit and the day,
    assert "data/raw/events.dvc" not in dvc  # not every partition again
    lock = yaml.safe_load(dvc["dvc.lock"])["stages"]["train"]
    assert [o["path"] for o in lock["outs"]] == [f"data/runs/date={WARMUP_END}/challenger"]
    assert registry.s3.list_objects_v2(Bucket=registry.bucket, Prefix="dvc/")["KeyCount"] > 0
    with pytest.raises(SystemExit) as exit_:
        versioning_cli(["reproduce", "--version", "champion"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0, out
    assert "weights sha256 match" in out and "final_loss" in out


def test_a_version_is_reproduced_at_its_training_thread_count_on_a_machine_with_other_cores(
    bootstrapped, registry, capsys
):
    """A reduction's sums are split by thread, so 1 and 2 intra-op threads round differently: a laptop
    or worker with another core count than the training worker's retrained to `mismatch`. The manifest
    records the training's numerics (torch, instruction set, threads, device) and `reproduce` retrains
    at the recorded thread count, then puts the process's count back."""
    import torch

    from tasks.common import intra_op_threads
    from tasks.versioning import main as versioning_cli

    recorded = registry.manifest(bootstrapped["champion"])["timings"]["train"]
    assert {"torch", "cpu_capability", "threads", "device"} <= set(recorded), recorded
    here = recorded["threads"] + 1  # this machine's default: another count than the training's
    with intra_op_threads(here):
        with pytest.raises(SystemExit) as exit_:
            versioning_cli(["reproduce", "--version", "champion"])
        assert torch.get_num_threads() == here
    out = capsys.readouterr().out
    assert exit_.value.code == 0, out
    assert "weights sha256 match" in out
    threads = recorded["threads"]
    assert re.search(rf"^threads\s+{threads}\s+{threads}$", out, re.M), out
