"""Promote: publish the approved challenger as an immutable version and move the champion pointer.

Also the registry's operator commands:
    python -m tasks.promote promote  --date D --approver NAME [--reason TEXT]
    python -m tasks.promote rollback --to VERSION --approver NAME --reason TEXT
    python -m tasks.promote pull     --date D     (champion -> data/runs/date=D/champion, verified)
    python -m tasks.promote status               (pointer, versions, history)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
from pathlib import Path

import yaml

from tasks.common import (
    PROJECT_ROOT,
    FreshrecError,
    Layout,
    git_commit,
    load_params,
    parse_day,
    read_json,
    setup_logging,
    sha256_file,
    write_json,
)
from tasks.registry import Registry

LOG = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"


def registry_from_env(params: dict, s3=None) -> Registry:
    from tasks.s3 import bucket_name, client, ensure_bucket

    s3 = s3 or client()
    bucket = bucket_name(params)
    ensure_bucket(s3, bucket)
    return Registry(s3, bucket, params["run"]["model_name"])


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
    from tasks.day import stage_files

    parts = sorted(p for p in layout.raw_events_root().glob("date=*") if p.name[5:] <= str(day))
    return {
        "day": str(day),
        "data_partitions": {p.name[5:]: sha256_file(p / "events.parquet") for p in parts},
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
    from tasks.day import base_of, version_id

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
    train = read_json(challenger / "train.json")
    metrics = {**evaluation, "export": _untimed(read_json(onnx / "export.json")), "train": train}
    # the version's files are a function of the day's data, params and base alone: no run timings
    # (they are in the manifest, written once), so a re-run after a kill re-publishes the same bytes
    write_json(run / METRICS_FILE, metrics)
    files = {name: challenger / name for name in ("config.json", "weights.safetensors", "items.json", "train.json")}
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


def reject(day: dt.date, params: dict, layout: Layout, who: str, reason: str, evidence: str | None) -> dict:
    """Record that day D's challenger was not promoted (rejected, or no answer in time) in the promotion
    history and beside the run; the pointer does not move."""
    import hashlib

    from tasks.day import challenger_version
    from tasks.summary import PROMOTION_FILE

    record = registry_from_env(params).record_decision(
        {
            "version": challenger_version(layout, day) or f"{day}-none",
            "day": str(day),
            "action": "reject",
            "approver": who,
            "reason": reason,
            "evidence_sha256": hashlib.sha256(evidence.encode()).hexdigest() if evidence else None,
        }
    )
    write_json(layout.run(day) / PROMOTION_FILE, {**record, "status": "rejected"})
    return record


def run(day: dt.date, params: dict, layout: Layout, approver: str, reason: str) -> dict:
    """Promote day D's challenger and record the outcome beside the run."""
    from tasks.summary import PROMOTION_FILE

    record = promote(layout, day, params, registry_from_env(params), approver, reason)
    write_json(layout.run(day) / PROMOTION_FILE, record)
    return record


def main(argv: list[str] | None = None) -> None:
    from tasks.day import OUTCOME, STEPS, pull, push, record_outcome, run_step
    from tasks.day import pull_champion as pull_base
    from tasks.store import Store

    setup_logging()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["promote", "reject", "rollback", "pull", "status"])
    ap.add_argument("--date")
    ap.add_argument("--to", help="version to roll back to")
    ap.add_argument("--base", help="pull: build on `live` or this version instead of the champion after the day before")
    ap.add_argument(
        "--workspace",
        action="store_true",
        help="promote/reject: this checkout's data/ (after `dvc repro`) instead of the day's state in the object store",
    )
    ap.add_argument("--approver", default=os.environ.get("USER", "cli"))
    ap.add_argument("--reason", default="")
    ap.add_argument("--params", default=None)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    reg = registry_from_env(params)
    layout = Layout.default()
    if args.command == "status":
        pointer, _ = reg.pointer()
        versions, incomplete = reg.complete()
        status = {"champion": pointer, "versions": versions, "history": reg.history()[-10:]}
        if incomplete:  # files without a manifest: re-run that day's promote_champion to finish (or leave them)
            status["incomplete"] = incomplete
        print(json.dumps(status, indent=2))
        return
    if args.command == "rollback":
        if not args.to or not args.reason:
            ap.error("rollback needs --to VERSION and --reason TEXT")
        record = reg.set_champion(args.to, args.approver, args.reason, action="rollback")
        print(json.dumps(record, indent=2))
        return
    day = parse_day(args.date or params["run"]["date"])
    store = Store.from_env(params)
    if args.command == "pull":
        version = pull_base(day, params, layout, store, reg, args.base)
        print(f"champion {version} -> {layout.run(day) / 'champion'}" if version else "no champion yet")
        return
    if args.command == "reject":
        if not args.workspace:
            pull(store, layout, day, STEPS["summarize_run"].reads)
        reject(day, params, layout, args.approver, args.reason or "rejected on the command line", None)
        outcome = record_outcome(day, layout, reg, "rejected")
        push(store, layout, day, (OUTCOME, *STEPS["promote_champion"].writes))
        print(json.dumps(outcome, indent=2))
        return
    reason = args.reason or "approved on the command line"
    if args.workspace:
        record = run(day, params, layout, args.approver, reason)
    else:
        record = run_step("promote_champion", day, params, layout, run, day, params, layout, args.approver, reason)
    record_outcome(day, layout, reg, record["status"])
    push(store, layout, day, (OUTCOME,))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
