"""Summary: one row per day from what the day's steps left behind, and the table `make run` prints.

Reads only files (validation report, drift report, evaluation, benchmark, promotion
record), so it tells the truth about a day whatever path ran it: Airflow, `dvc repro`
or a backfill, and also for a day that stopped early.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from tasks.common import Layout, day_str, parse_day, read_json, write_json
from tasks.reports import links

SUMMARY_FILE = "summary.json"
PROMOTION_FILE = "promotion.json"


def _maybe(path: Path) -> dict | None:
    return read_json(path) if path.exists() else None


def summarize(day: dt.date, layout: Layout, api: str | None = None) -> dict:
    """The day's row; `api` (the Airflow API server's address) adds the links to its reports."""
    run = layout.run(day)
    validation = _maybe(layout.reports("validation", day) / "report.json")
    drift = _maybe(layout.reports("drift", day) / "drift.json")
    evaluation = _maybe(run / "evaluation.json")
    bench = _maybe(run / "benchmark.json")
    promotion = _maybe(run / PROMOTION_FILE)

    def ndcg(side: str):
        block = (evaluation or {}).get(side)
        return None if block is None else block["all"]["ndcg@10"]

    served = None
    if bench:
        served = next(
            r["p99_ms"] for r in bench["rows"] if r["runtime"] == f"ort_{bench['serve_variant']}" and r["batch"] == 1
        )
    if validation is None:
        status = "not validated"
    elif not validation["passed"]:
        status = "quarantined"
    else:
        status = "ok" + (f" ({len(validation['warnings'])} warn)" if validation["warnings"] else "")
    summary = {
        "day": day_str(day),
        "events": validation["rows"] if validation else None,
        "validation": status,
        "decision": drift["decision"] if drift else None,
        "ndcg_champion": ndcg("champion"),
        "ndcg_challenger": ndcg("challenger"),
        "quality_gate": (evaluation or {}).get("gate", {}).get("passed"),
        "p99_ms": served,
        "serve_variant": bench["serve_variant"] if bench else None,
        "latency_gate": (bench or {}).get("gate", {}).get("passed"),
        "promotion": promotion,
        "reports": links(api, day, validation, drift) or None,
    }
    write_json(run / SUMMARY_FILE, summary)
    return summary


def _fmt(value, spec: str = "") -> str:
    return "—" if value is None else format(value, spec)


def _outcome(row: dict) -> str:
    """What became of the day's challenger, in the table's last column."""
    promo = row.get("promotion") or {}
    if promo.get("status") == "promoted":
        return promo["version"]
    if promo.get("status") == "rejected":
        when = promo.get("answered_at") or promo.get("at")
        why = str(promo.get("reason") or "")
        why = why if len(why) <= 80 else why[:79] + "…"
        return (
            f"— rejected by {promo.get('approver')}"
            + (f" at {when[:16]}" if when else "")
            + (f": {why}" if why else "")
        )
    if promo.get("status") in ("unchanged", "published"):
        return f"{promo['status']} ({promo.get('champion') or promo.get('version')})"
    held = [
        (row["validation"] == "quarantined", "— (quarantined)"),
        (row["decision"] == "skip", "— (skip: champion stays)"),
        (row["quality_gate"] is False, "— held: quality gate"),
        (row["latency_gate"] is False, "— held: latency gate"),
        (bool(row["latency_gate"]), "— not approved"),
    ]
    return next((label for cond, label in held if cond), "—")


def format_table(rows: list[dict]) -> str:
    head = f"{'day':<10}  {'events':>6}  {'validation':<12}  {'drift':<11}  {'NDCG@10 champ→chall':<20}  "
    head += f"{'p99 ms':>7}  promoted"
    lines = [head, "-" * len(head)]
    for r in rows:
        promoted = _outcome(r)
        ndcg = f"{_fmt(r['ndcg_champion'], '.4f')} → {_fmt(r['ndcg_challenger'], '.4f')}"
        lines.append(
            f"{r['day']:<10}  {_fmt(r['events']):>6}  {r['validation']:<12}  {_fmt(r['decision']):<11}  "
            f"{ndcg:<20}  {_fmt(r['p99_ms'], '.3f'):>7}  {promoted}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--from", dest="start", required=True)
    ap.add_argument("--to", dest="end", required=True)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    from tasks.params import load_params
    from tasks.store import Store
    from tasks.units import BASE, BENCHMARK, CHALLENGER, DRIFT, EVALUATION, PROMOTION, VALIDATION

    layout, store = Layout.default(), Store.from_env(load_params())
    day, end, rows = parse_day(args.start), parse_day(args.end), []
    while day <= end:  # what the day's tasks left is in the object store, not on this disk
        for unit in (VALIDATION, DRIFT, BASE, EVALUATION, BENCHMARK, PROMOTION, CHALLENGER):
            store.pull(layout.root, str(unit.path(layout, day).relative_to(layout.root)), required=False)
        rows.append(summarize(day, layout))
        day += dt.timedelta(days=1)
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
