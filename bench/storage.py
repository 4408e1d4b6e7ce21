"""Storage per day: what the object store holds after `make run`, and what each day's challenger costs
in each of the three places it is kept (the run state's blobs, the DVC remote, the registry version).

Reads the bucket `make run` left (its S3 credentials from .run/demo/s3, or the environment's), prints a
table and writes JSON:

    python bench/storage.py --out bench/results/storage_ml100k.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _objects(s3, bucket: str, prefix: str = "") -> list[dict]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o for page in pages for o in page.get("Contents", [])]


def measure(params: dict) -> dict:
    from tasks.registry import registry_from_env
    from tasks.s3 import bucket_name
    from tasks.store import Store

    store = Store.from_env(params)
    registry = registry_from_env(params)
    bucket = bucket_name(params)
    prefixes = defaultdict(lambda: {"objects": 0, "bytes": 0})
    for o in _objects(store.s3, bucket):
        top = o["Key"].split("/")[0]
        key = f"{top}/{o['Key'].split('/')[1]}" if top in ("state", "models") else top
        prefixes[key]["objects"] += 1
        prefixes[key]["bytes"] += o["Size"]
    days = []
    for version in registry.versions():
        day = version[:10]
        unit = store.unit(f"runs/date={day}/challenger") or {"files": {}}
        challenger = sum(m["size"] for m in unit["files"].values())
        onnx = sum(m["size"] for m in (store.unit(f"runs/date={day}/onnx") or {"files": {}})["files"].values())
        files = registry.manifest(version)["files"]
        days.append(
            {
                "day": day,
                "version": version,
                "challenger_bytes": challenger,  # weights, config, items, reports: run state and DVC each hold it
                "onnx_bytes": onnx,
                "registry_version_bytes": sum(m["size"] for m in files.values()),
            }
        )
    return {"bucket": bucket, "prefixes": dict(sorted(prefixes.items())), "days": days}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, default=ROOT / ".run" / "demo")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from tasks.params import load_params
    from tasks.s3 import LocalS3

    if (args.demo / "s3").is_dir() and "AWS_ACCESS_KEY_ID" not in os.environ:
        os.environ.update(LocalS3(args.demo / "s3", int(os.environ.get("FRESHREC_DEMO_S3_PORT", "8333"))).env())
    params = load_params(args.demo / "params.yaml" if (args.demo / "params.yaml").exists() else None)
    result = measure(params)
    print(f"{'prefix':<24} {'objects':>8} {'MB':>9}")
    for name, row in result["prefixes"].items():
        print(f"{name:<24} {row['objects']:>8} {row['bytes'] / 1e6:>9.2f}")
    print(f"\n{'day':<11} {'challenger KB':>14} {'onnx KB':>9} {'version KB':>11}  (challenger: state, DVC, version)")
    for d in result["days"]:
        print(f"{d['day']:<11} {d['challenger_bytes'] / 1e3:>14.1f} {d['onnx_bytes'] / 1e3:>9.1f} "
              f"{d['registry_version_bytes'] / 1e3:>11.1f}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
