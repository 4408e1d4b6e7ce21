"""Where a day's reports live and the links an approver opens them by.

Every report is already a unit of the object store (tasks/store.py), kept for every day; the
Airflow API server serves them behind Airflow's own login (serve/reports.py, an Airflow plugin):

    <api>/freshrec/reports/                               every day that has reports
    <api>/freshrec/reports/<D>/                           the day's index: one link per report
    <api>/freshrec/reports/<D>/validation/<file>          reports/validation/date=D: report.json, GX Data Docs
    <api>/freshrec/reports/<D>/drift/<file>               reports/drift/date=D: drift.html, drift.json
    <api>/freshrec/reports/<D>/evaluation                 runs/date=D/evaluation.json, as a page
    <api>/freshrec/reports/<D>/benchmark                  runs/date=D/benchmark.json, as a page

`<api>` is the API server's public address: Airflow's `[api] base_url`, else its host and port.
"""

from __future__ import annotations

import datetime as dt

from tasks.common import day_str

PREFIX = "/freshrec"
FOLDERS = {"validation": "reports/validation/date={day}", "drift": "reports/drift/date={day}"}
PAGES = {"evaluation": "runs/date={day}/evaluation.json", "benchmark": "runs/date={day}/benchmark.json"}
BIND_ALL = ("0.0.0.0", "::")  # noqa: S104 (a server bound to every interface is linked to on loopback)
DAYS_PARENT = "reports/validation"  # a day has reports once it was validated


def ranking_note(evaluation: dict) -> str:
    """How an evaluation.json ranked its held-out events, in words for the person reading it."""
    served = evaluation.get("excluded") == "window"
    return "full ranking" + (", as served: items of the user's last window never recommended" if served else "")


def api_url(base_url: str | None, host: str | None, port: str | int | None) -> str:
    """The API server's address as a browser reaches it (Airflow's [api] settings)."""
    if base_url:
        return base_url.rstrip("/")
    host = host or "127.0.0.1"
    return f"http://{'127.0.0.1' if host in BIND_ALL else host}:{port or 8080}"


def day_url(api: str, day: dt.date) -> str:
    return f"{api}{PREFIX}/reports/{day_str(day)}/"


def links(api: str | None, day: dt.date, validation: dict | None, drift: dict | None) -> dict[str, str]:
    """name -> URL of each report the day has (empty without an API address, e.g. on the CLI)."""
    if not api:
        return {}
    base = day_url(api, day)
    out = {"index": base}
    if (validation or {}).get("docs"):
        out["data_docs"] = f"{base}validation/{validation['docs']}"
    if (drift or {}).get("html"):
        out["drift_report"] = f"{base}drift/{drift['html']}"
    out["evaluation"] = f"{base}evaluation"
    out["benchmark"] = f"{base}benchmark"
    return out
