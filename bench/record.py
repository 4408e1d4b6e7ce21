"""Add bench/quality.py reports to a record: bench/results/quality_ml1m.json keeps every run that
docs/BENCHMARKS.md quotes, each with its command, machine and commit, and says which reach the target.

    python bench/record.py bench/results/quality_ml1m_cpu_sampled.json --into bench/results/quality_ml1m.json
    python bench/record.py .gpu/out/quality_*.json --commit <sha> --into bench/results/quality_ml1m.json

A GPU machine gets the working tree without .git, so its reports say `git_commit: unknown`: --commit
names the commit whose tree was carried there. A run already in the record (same command, same item
init) is replaced, so adding a report twice changes nothing. The record is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FIGURES = ("test_ndcg@10", "test_hr@10")


def entries(report: dict, source: str, commit: str | None) -> list[dict]:
    """A report's runs as record entries: the figures plus the command, machine and commit behind them."""
    missing = [k for k in ("command", "machine", "runs") if k not in report] if isinstance(report, dict) else ["keys"]
    if missing or not isinstance(report["runs"], list) or not report["runs"]:
        raise SystemExit(f"{source}: not a bench/quality.py report (no {', '.join(missing) or 'runs'})")
    known = report.get("git_commit") not in (None, "unknown")
    if not known and not commit:
        raise SystemExit(f"{source}: the report does not know its commit (a tree without .git, such as the GPU "
                         "machine's): give --commit <the commit whose tree was carried there>")  # fmt: skip
    out = []
    for run in report["runs"]:
        if not isinstance(run, dict) or any(not isinstance(run.get(k), (int, float)) for k in FIGURES):
            raise SystemExit(f"{source}: a run without {' and '.join(FIGURES)}: not a finished quality run")
        out.append({"command": report["command"], "machine": report["machine"], "config": report.get("config"),
                    "git_commit": report["git_commit"] if known else commit, **run})  # fmt: skip
    return out


def add(record: dict, new: list[dict]) -> dict:
    """The record with `new` in it; an entry of the same command and item init is replaced, not doubled."""

    def key(e: dict) -> tuple:
        return e["command"].removeprefix("python "), e.get("text_init")

    fresh = {key(e) for e in new}
    return {**record, "runs": [e for e in record.get("runs", []) if key(e) not in fresh] + new}


def meets(entry: dict, target: dict) -> bool:
    return all(entry[f"test_{k}"] >= v for k, v in target.items())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", type=Path, help="bench/quality.py --out files")
    ap.add_argument("--into", type=Path, required=True, help="the record (created if absent)")
    ap.add_argument("--commit", help="for reports made where .git was not (the GPU machine)")
    args = ap.parse_args(argv)

    from tasks.common import write_json

    record = {"runs": []}
    if args.into.exists():
        record = json.loads(args.into.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("runs"), list):
            raise SystemExit(f"{args.into}: not a record (a JSON object with a runs list); give another --into")
    new = []
    for path in args.reports:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{path}: cannot read the report ({exc})") from None
        new += entries(report, str(path), args.commit)  # every report checked before the record is touched
    record = add(record, new)
    write_json(args.into, record)
    target = record.get("target", {})
    print(f"{'NDCG@10':>8} {'HR@10':>7} {'target':>6}  {'machine':<24} command")
    for e in sorted(record["runs"], key=lambda e: -e["test_ndcg@10"]):
        ok = ("yes" if meets(e, target) else "no") if target else "-"
        device = e.get("machine", {}).get("device", "?")
        print(f"{e['test_ndcg@10']:>8.4f} {e['test_hr@10']:>7.4f} {ok:>6}  {device:<24} {e['command']}")
    return record


if __name__ == "__main__":
    main()
