"""Approval evidence: what a person needs to approve or reject a challenger, as markdown.

Rendered into the Airflow approval request (Required Actions), and readable on its own.
"""

from __future__ import annotations

import datetime as dt
import math

from tasks.common import Layout, read_json
from tasks.drift import signals
from tasks.reports import links, ranking_note
from tasks.units import TRAIN_FILE, challenger_version
from tasks.validate import describe


def _num(v, spec=".4f") -> str:
    return "—" if v is None or math.isnan(v) else format(v, spec)


def evidence_markdown(day: dt.date, layout: Layout, thresholds: dict, api: str | None = None) -> str:
    """`thresholds`: params.yaml `drift`; `api`: the Airflow API server's address, for links to the
    day's reports (tasks/reports.py)."""
    run = layout.run(day)
    ev = read_json(run / "evaluation.json")
    bench = read_json(run / "benchmark.json")
    drift = read_json(layout.reports("drift", day) / "drift.json")
    validation = read_json(layout.reports("validation", day) / "report.json")
    export = read_json(run / "onnx" / "export.json")
    train = read_json(run / "challenger" / TRAIN_FILE)
    timing = read_json(run / "challenger" / "timing.json")
    base = read_json(run / "base.json")
    version = challenger_version(layout, day)
    url = links(api, day, validation, drift)
    k = ev["k"]
    lines = [
        f"**Candidate version** `{version}` — trained `{train['mode']}` ({train['trainable']}) on "
        f"{train['examples']} sequences in {timing['seconds']:.1f} s on {train['device']}; "
        f"{train['new_items']} new items. Built on and compared with the champion `{base['base']}` "
        f"({base['why']}); it is promoted only if that is still the live champion.",
        "",
        f"**Data** {validation['rows']} events on {day}; validation passed"
        + (" with warnings (see below)" if validation["warnings"] else "")
        + (f" ([Data Docs]({url['data_docs']}))" if "data_docs" in url else "")
        + ".",
        *[
            f"- **warning** {describe(w, validation.get('volume'), validation.get('missing'))}"
            for w in validation["warnings"]
        ],
        "",
        f"**Drift** decision `{drift['decision']}`: "
        + "; ".join(drift["reasons"])
        + (f" ([report]({url['drift_report']}))" if "drift_report" in url else ""),
        "",
        "| drift signal | value | acts on | threshold |",
        "|---|---|---|---|",
        *[
            f"| {r['signal']} | {_num(r['value'], '.3f')} | {r['compared']} | {r['threshold']} |"
            for r in signals(drift, thresholds)
        ],
        "",
        f"**Quality** on {ev['holdout_events']} held-out events, {ranking_note(ev)} — gate: {ev['gate']['reason']}"
        + (f" ([evaluation]({url['evaluation']}))" if "evaluation" in url else ""),
        "",
        f"| slice | n | champion NDCG@{k} | challenger NDCG@{k} | champion HR@{k} | challenger HR@{k} |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("all", "new_items", "cold_users"):
        ch = (ev["champion"] or {}).get(name, {})
        cl = ev["challenger"][name]
        lines.append(
            f"| {name} | {cl['n']} | {_num(ch.get(f'ndcg@{k}'))} | {_num(cl[f'ndcg@{k}'])} | "
            f"{_num(ch.get(f'hr@{k}'))} | {_num(cl[f'hr@{k}'])} |"
        )
    lines += [
        "",
        f"**Latency** ({bench['threads']} threads, {bench['device']}); serving `{bench['serve_variant']}` — "
        f"{bench['gate']['reason']}. ONNX parity: fp32 overlap {export['fp32']['overlap']}, "
        f"int8 overlap {export['int8']['overlap']}."
        + (f" ([benchmark]({url['benchmark']}))" if "benchmark" in url else ""),
        "",
        "| runtime | batch | p50 ms | p95 ms | p99 ms | QPS |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['runtime']} | {r['batch']} | {r['p50_ms']:.3f} | {r['p95_ms']:.3f} | {r['p99_ms']:.3f} "
        f"| {r['qps']:.0f} |"
        for r in bench["rows"]
    ]
    if url:
        lines += ["", f"All of the day's reports: {url['index']}"]
    return "\n".join(lines)
