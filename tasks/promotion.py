"""Promotion: publish the approved challenger as an immutable version and move the champion pointer; record
a rejection. The step's functions; the operator commands are `python -m tasks.promote` (tasks/promote.py)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import yaml

from tasks.common import (
    PROJECT_ROOT,
    FreshrecError,
    Layout,
    git_commit,
    read_json,
    sha256_file,
    write_json,
)
from tasks.registry import Registry, registry_from_env
from tasks.units import METRICS_FILE, MODEL_FILES, TRAIN_FILE

LOG = logging.getLogger(__name__)


def version_day(version: str) -> str:
    """Versions are `<YYYY-MM-DD>-<sha8>`: the day whose data the model was trained through."""
    return version[:10]


def dvc_lock_stages(lock: Path, day: dt.date) -> dict:
    """Stage -> {deps, outs} md5s from dvc.lock, when the lock describes this day's run (`dvc repro`)."""
    if not lock.exists():
        return {}
    data = yaml.safe_load(lock.read_text()) or {}
    out = {}
    for name, stage in (data.get("stages") or {}).items():
        out[name] = {k: {e["path"]: e.get("md5") for e in stage.get(k, [])} for k in ("deps", "outs")}
    return out if f"date={day}" in json.dumps(out) else {}


def lineage(layout: Layout, day: dt.date, params: dict) -> dict:
    from tasks.history import partition_digests
    from tasks.units import stage_files

    return {
        "day": str(day),
        "data_partitions": partition_digests(layout, day),
        "dvc_lock": dvc_lock_stages(PROJECT_ROOT / "dvc.lock", day),
        "dvc": stage_files(layout, day),  # the training run as DVC recorded it: `make reproduce` retrains it
        "params": params,
        "git_commit": git_commit(),
    }


# keys of a step report that are run timings, not results: they stay out of the immutable version
_TIMINGS = ("seconds",)


def _untimed(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in _TIMINGS}


def promote(layout: Layout, day: dt.date, params: dict, registry: Registry, approver: str, reason: str) -> dict:
    """Publish runs/date=D as a version and move the pointer from base(D) to it. Idempotent per day.

    The pointer moves only if it still names base(D), the champion this challenger was built on and
    evaluated against; otherwise nothing is promoted blind: a newer live champion is a refusal (going
    back is `rollback`), and so is one that changed since the day started (re-run the day)."""
    from tasks.units import base_of, version_id

    run = layout.run(day)
    challenger, onnx = run / "challenger", run / "onnx"
    base = base_of(layout, day)
    evaluation = read_json(run / "evaluation.json")
    bench = read_json(run / "benchmark.json")
    drift = read_json(layout.reports("drift", day) / "drift.json")
    for gate_name, report in (("quality", evaluation), ("latency", bench)):
        if not report["gate"]["passed"]:
            raise FreshrecError(f"{gate_name} gate failed for {day}: {report['gate']['reason']}; refusing to promote")
    weights_sha = sha256_file(challenger / "weights.safetensors")
    version = version_id(day, weights_sha)
    pointer, etag = registry.pointer()
    live = pointer["version"] if pointer else None
    if live == version:  # a re-run after the pointer moved (its reply or the task may have been lost)
        registry.ensure_history()
        LOG.info("%s is already the champion: nothing to do", version)
        return {**pointer, "status": "unchanged"}
    done = [r for r in registry.history() if r["version"] == version and r.get("action") == "promote"]
    if done:
        LOG.info(
            "%s was promoted at %s and has since been superseded by %s: nothing to do", version, done[-1]["at"], live
        )
        return {**done[-1], "status": "already promoted", "champion": live}
    if live != base:
        if live is not None and version_day(live) >= str(day):
            raise FreshrecError(
                f"the live champion {live} is from day {version_day(live)}, not older than {day}: promoting {version} "
                f"would move the pointer back, which only an explicit rollback does: `python -m tasks.promote "
                f"rollback --to <version> --reason ...`"
            )
        raise FreshrecError(
            f"the live champion is {live}, but {version} was built on and evaluated against {base}: the pointer "
            f"moved since day {day} started (a rollback or another promotion), so this evidence no longer holds. "
            f"Re-run day {day} (with the `base` Param set to `live` to build on {live}), or roll back to {base}"
        )
    if base is not None and registry.manifest(base)["files"]["weights.safetensors"]["sha256"] == weights_sha:
        LOG.info("challenger is its base %s byte for byte: nothing to promote", base)
        return {**pointer, "status": "unchanged"}
    train = read_json(challenger / TRAIN_FILE)
    metrics = {**evaluation, "export": _untimed(read_json(onnx / "export.json")), "train": train}
    # the version's files are a function of the day's data, params and base alone: no run timings
    # (they are in the manifest, written once), so a re-run after a kill re-publishes the same bytes
    write_json(run / METRICS_FILE, metrics)
    files = {name: challenger / name for name in MODEL_FILES}
    files |= {
        "model.onnx": onnx / "model.onnx",
        "model.int8.onnx": onnx / "model.int8.onnx",
        METRICS_FILE: run / METRICS_FILE,
    }
    manifest = registry.publish(
        version,
        files,
        {
            "model": registry.name,
            "base": base,
            "serve_file": bench["serve_file"],
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "approver": approver,
            "reason": reason,
            "drift": {"decision": drift["decision"], "reasons": drift["reasons"]},
            "metrics": {"champion": evaluation["champion"], "challenger": evaluation["challenger"]},
            "benchmark": {"serve_variant": bench["serve_variant"], "rows": bench["rows"]},
            "timings": {
                "train": read_json(challenger / "timing.json"),
                "export_seconds": read_json(onnx / "export.json").get("seconds"),
            },
            "lineage": lineage(layout, day, params),
        },
    )
    record = registry.set_champion(
        version,
        approver,
        reason,
        expected_etag=etag,
        extra={"day": str(day), "base": base, "serve_file": manifest["serve_file"]},
    )
    return {**record, "status": "promoted"}


def reject(
    day: dt.date, params: dict, layout: Layout, who: str, reason: str, evidence: str | None,
    answered_at: str | None = None,
) -> dict:  # fmt: skip
    """Record that day D's challenger was not promoted (rejected, or no answer in time) in the promotion
    history and beside the run; the pointer does not move. `answered_at`: when the approver answered."""
    import hashlib

    from tasks.summary import PROMOTION_FILE
    from tasks.units import challenger_version

    record = registry_from_env(params).record_decision(
        {
            "version": challenger_version(layout, day) or f"{day}-none",
            "day": str(day),
            "action": "reject",
            "approver": who,
            "reason": reason,
            "answered_at": answered_at,
            "evidence_sha256": hashlib.sha256(evidence.encode()).hexdigest() if evidence else None,
        },
        at=dt.datetime.fromisoformat(answered_at) if answered_at else None,  # a retry records it once
    )
    write_json(layout.run(day) / PROMOTION_FILE, {**record, "status": "rejected"})
    return record


def run(day: dt.date, params: dict, layout: Layout, approver: str, reason: str) -> dict:
    """Promote day D's challenger and record the outcome beside the run."""
    from tasks.summary import PROMOTION_FILE

    record = promote(layout, day, params, registry_from_env(params), approver, reason)
    write_json(layout.run(day) / PROMOTION_FILE, record)
    return record
