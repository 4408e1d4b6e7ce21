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
import shutil
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
    from tasks.s3 import client, ensure_bucket

    s3 = s3 or client()
    bucket = os.environ.get("FRESHREC_BUCKET", params["promote"]["bucket"])
    ensure_bucket(s3, bucket)
    return Registry(s3, bucket, params["run"]["model_name"])


def version_day(version: str) -> str:
    """Versions are `<YYYY-MM-DD>-<sha8>`: the day whose data the model was trained through."""
    return version[:10]


def champion_as_of(registry: Registry, day: dt.date) -> str | None:
    """The champion a run for `day` starts from: the pointer's version if trained before `day`;
    when re-running or backfilling an older day, the latest earlier champion in the history.
    So re-running a day starts from the same model and gives the same result."""
    pointer, _ = registry.pointer()
    if pointer is None:
        return None
    if version_day(pointer["version"]) < str(day):
        return pointer["version"]
    earlier = [r["version"] for r in registry.history() if version_day(r["version"]) < str(day)]
    return earlier[-1] if earlier else None


def pull_champion(registry: Registry, dest: Path, day: dt.date) -> str | None:
    """Download and verify day D's starting champion into `dest`; None if there is none yet."""
    version = champion_as_of(registry, day)
    if version is None:  # an empty marker dir: DVC sees the stage's output, the steps see no champion
        shutil.rmtree(dest, ignore_errors=True)  # a leftover from an earlier run must not pose as champion
        write_json(dest / "no_champion.json", {"day": str(day), "champion": None})
        return None
    files = ["config.json", "weights.safetensors", "items.json", "train.json", METRICS_FILE]
    registry.download(version, dest, files)
    return version


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
    parts = sorted(p for p in layout.raw_events_root().glob("date=*") if p.name[5:] <= str(day))
    return {
        "day": str(day),
        "data_partitions": {p.name[5:]: sha256_file(p / "events.parquet") for p in parts},
        "dvc_lock": dvc_lock_stages(PROJECT_ROOT / "dvc.lock", day),
        "params": params,
        "git_commit": git_commit(),
    }


def promote(layout: Layout, day: dt.date, params: dict, registry: Registry, approver: str, reason: str) -> dict:
    """Publish data/runs/date=D as a version and point the champion at it. Idempotent per day."""
    run = layout.run(day)
    challenger, onnx = run / "challenger", run / "onnx"
    evaluation = read_json(run / "evaluation.json")
    bench = read_json(run / "benchmark.json")
    drift = read_json(layout.reports("drift", day) / "drift.json")
    for gate_name, report in (("quality", evaluation), ("latency", bench)):
        if not report["gate"]["passed"]:
            raise FreshrecError(f"{gate_name} gate failed for {day}: {report['gate']['reason']}; refusing to promote")
    weights_sha = sha256_file(challenger / "weights.safetensors")
    pointer, etag = registry.pointer()
    if pointer is not None:
        current = registry.manifest(pointer["version"])
        if current["files"]["weights.safetensors"]["sha256"] == weights_sha:
            LOG.info("challenger is the champion (%s) byte for byte: nothing to promote", pointer["version"])
            return {**pointer, "status": "unchanged"}
    metrics = {
        **evaluation,
        "export": read_json(onnx / "export.json"),
        "benchmark": bench,
        "train": read_json(challenger / "train.json"),
    }
    (run / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    files = {name: challenger / name for name in ("config.json", "weights.safetensors", "items.json", "train.json")}
    files |= {
        "model.onnx": onnx / "model.onnx",
        "model.int8.onnx": onnx / "model.int8.onnx",
        METRICS_FILE: run / METRICS_FILE,
    }
    version = f"{day}-{weights_sha[:8]}"
    manifest = registry.publish(
        version,
        files,
        {
            "model": registry.name,
            "serve_file": bench["serve_file"],
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "approver": approver,
            "reason": reason,
            "drift": {"decision": drift["decision"], "reasons": drift["reasons"]},
            "metrics": {"champion": evaluation["champion"], "challenger": evaluation["challenger"]},
            "benchmark": {"serve_variant": bench["serve_variant"], "rows": bench["rows"]},
            "lineage": lineage(layout, day, params),
        },
    )
    record = registry.set_champion(
        version, approver, reason, expected_etag=etag, extra={"day": str(day), "serve_file": manifest["serve_file"]}
    )
    return {**record, "status": "promoted"}


def run(day: dt.date, params: dict, layout: Layout, approver: str, reason: str) -> dict:
    """Promote day D's challenger and record the outcome beside the run."""
    from tasks.summary import PROMOTION_FILE

    record = promote(layout, day, params, registry_from_env(params), approver, reason)
    write_json(layout.run(day) / PROMOTION_FILE, record)
    return record


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["promote", "rollback", "pull", "status"])
    ap.add_argument("--date")
    ap.add_argument("--to", help="version to roll back to")
    ap.add_argument("--approver", default=os.environ.get("USER", "cli"))
    ap.add_argument("--reason", default="")
    ap.add_argument("--params", default=None)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    reg = registry_from_env(params)
    layout = Layout.default()
    if args.command == "status":
        pointer, _ = reg.pointer()
        print(json.dumps({"champion": pointer, "versions": reg.versions(), "history": reg.history()[-10:]}, indent=2))
        return
    if args.command == "rollback":
        if not args.to or not args.reason:
            ap.error("rollback needs --to VERSION and --reason TEXT")
        record = reg.set_champion(args.to, args.approver, args.reason, action="rollback")
        print(json.dumps(record, indent=2))
        return
    day = parse_day(args.date or params["run"]["date"])
    if args.command == "pull":
        version = pull_champion(reg, layout.run(day) / "champion", day)
        print(f"champion {version} -> {layout.run(day) / 'champion'}" if version else "no champion yet")
        return
    print(json.dumps(run(day, params, layout, args.approver, args.reason or "approved on the command line"), indent=2))


if __name__ == "__main__":
    main()
