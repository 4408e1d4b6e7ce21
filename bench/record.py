"""Add bench/quality.py reports to a record: bench/results/quality_ml1m.json keeps every run that
docs/BENCHMARKS.md quotes, each with its command, machine and commit, and says which reach the target:
on docs/anchors.md's protocol as written (nothing excluded from the ranking) and on the protocol of the
published figures (the user's seen items excluded; docs/BENCHMARKS.md, protocol note).

    python bench/record.py bench/results/quality_ml1m_cpu_full.json --into bench/results/quality_ml1m.json
    python bench/record.py <files_at>/quality_*.json --commit "$(cat .gpu/COMMIT)" \
        --into bench/results/quality_ml1m.json

A GPU machine gets the working tree without .git, so its reports say `git_commit: unknown`: --commit
names the commit whose tree was carried there (`bench/gpu_sweep.sh prepare` writes it to .gpu/COMMIT).
A run already in the record (same command, same item init) is replaced where it stands, so adding a
report twice changes nothing. Every report and the record are checked before the record is written,
atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FIGURES = ("test_ndcg@10", "test_hr@10")


def finished(run) -> bool:
    """A run entry with its test figures (what the record sorts and checks against the target)."""
    return isinstance(run, dict) and all(isinstance(run.get(k), (int, float)) for k in FIGURES)


def load(path: Path, what: str, hint: str = "") -> object:
    """The JSON in `path`, or a SystemExit that names the file and why it cannot be read."""
    from tasks.common import read_json

    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: cannot read the {what} ({exc}){hint}") from None


def entries(report: dict, source: str, commit: str | None) -> list[dict]:
    """A report's runs as record entries: the figures plus the command, machine and commit behind them."""
    missing = [k for k in ("command", "machine", "runs") if k not in report] if isinstance(report, dict) else ["keys"]
    if missing or not isinstance(report["runs"], list) or not report["runs"]:
        raise SystemExit(f"{source}: not a bench/quality.py report (no {', '.join(missing) or 'runs'})")
    known = report.get("git_commit") not in (None, "unknown")
    if known and commit and commit != report["git_commit"]:
        print(f"{source}: made at commit {report['git_commit']}; --commit {commit} not used for it", file=sys.stderr)
    if not known and not commit:
        raise SystemExit(f"{source}: the report does not know its commit (a tree without .git, such as the GPU "
                         "machine's): give --commit <the commit whose tree was carried there>")  # fmt: skip
    out = []
    for run in report["runs"]:
        if not finished(run):
            raise SystemExit(f"{source}: a run without {' and '.join(FIGURES)}: not a finished quality run")
        out.append({"command": report["command"], "machine": report["machine"], "config": report.get("config"),
                    "git_commit": report["git_commit"] if known else commit, **run})  # fmt: skip
    return out


def key(entry: dict) -> tuple:
    """Which run an entry is: its command (older entries lack the leading `python `) and item init."""
    return entry["command"].removeprefix("python "), entry.get("text_init")


def add(record: dict, new: list[dict]) -> dict:
    """The record with `new` in it: an entry of the same run is replaced where it stands (so adding a
    report again changes nothing), a new run goes at the end; within `new` the last one of a run wins."""
    fresh = {key(e): e for e in new}
    runs = [fresh.pop(key(e), e) for e in record["runs"]]
    return {**record, "runs": runs + list(fresh.values())}


def check_record(record, path: Path) -> None:
    """A record this script can add to and print, or a SystemExit that says what is wrong with it."""
    if not isinstance(record, dict) or not isinstance(record.get("runs"), list):
        raise SystemExit(f"{path}: not a record (a JSON object with a runs list); give another --into")
    for i, e in enumerate(record["runs"]):
        if not finished(e) or not isinstance(e.get("command"), str):
            raise SystemExit(f"{path}: runs[{i}] lacks a command or {' / '.join(FIGURES)}: mend the record by hand "
                             "(git log -p shows what it was) or give another --into")  # fmt: skip


def meets(entry: dict, target: dict, seen_excluded: bool = False) -> bool | None:
    """Whether a run reaches the target: on docs/anchors.md's protocol as written (nothing excluded from the
    ranking), or with `seen_excluded` on the protocol of the published figures (the user's seen items
    excluded); None where the run did not measure that protocol (runs older than the figure)."""
    if not seen_excluded:
        return all(entry[f"test_{k}"] >= v for k, v in target.items())
    figures = entry.get("test_seen_excluded")
    if not isinstance(figures, dict) or not all(isinstance(figures.get(k), (int, float)) for k in target):
        return None
    return all(figures[k] >= v for k, v in target.items())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", type=Path, help="bench/quality.py --out files")
    ap.add_argument("--into", type=Path, required=True, help="the record (created if absent)")
    ap.add_argument("--commit", help="for reports made where .git was not (the GPU machine)")
    args = ap.parse_args(argv)

    from tasks.common import write_json

    record = load(args.into, "record", "; give another --into") if args.into.exists() else {"runs": []}
    check_record(record, args.into)
    new = []
    for path in args.reports:  # every report checked before the record is touched
        new += entries(load(path, "report"), str(path), args.commit)
    record = add(record, new)
    write_json(args.into, record)
    target = record.get("target", {})

    def reaches(e: dict, seen_excluded: bool) -> str:
        return {True: "yes", False: "no", None: "-"}[meets(e, target, seen_excluded)] if target else "-"

    print(f"{'nothing excluded':^24} | {'seen items excluded':^24} |")
    print(f"{'NDCG@10':>8} {'HR@10':>7} {'target':>6} | {'NDCG@10':>8} {'HR@10':>7} {'target':>6} | "
          f"{'machine':<24} command")  # fmt: skip
    for e in sorted(record["runs"], key=lambda e: -e["test_ndcg@10"]):
        seen = e.get("test_seen_excluded") or {}
        seen_figures = " ".join(f"{seen[k]:>{w}.4f}" if isinstance(seen.get(k), (int, float)) else f"{'-':>{w}}"
                                for k, w in (("ndcg@10", 8), ("hr@10", 7)))  # fmt: skip
        device = e["machine"].get("device", "?") if isinstance(e.get("machine"), dict) else "?"
        print(f"{e['test_ndcg@10']:>8.4f} {e['test_hr@10']:>7.4f} {reaches(e, False):>6} | {seen_figures} "
              f"{reaches(e, True):>6} | {device:<24} {e['command']}")  # fmt: skip
    return record


if __name__ == "__main__":
    main()
