"""The day's reports, served by the Airflow API server behind Airflow's own login (an Airflow 3
plugin: serve/airflow_plugin.py mounts this app at /freshrec).

Every page is read from the object store (tasks/store.py), whatever worker wrote it, with its
sha256 checked; nothing is read from a local disk, and only files a stored unit lists can be named,
so a path cannot reach anything else. A request needs the same right as reading the DAG's runs:
a browser logged in to Airflow (its `_token` cookie) or a REST client's bearer token. A browser
that is not logged in is sent to Airflow's login page and back. URL scheme: tasks/reports.py.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import mimetypes
from functools import cache

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from tasks.common import day_str, parse_day
from tasks.datadocs import DOCS_DIR
from tasks.params import load_params
from tasks.reports import DAYS_PARENT, FOLDERS, PAGES, ranking_note

DAG_ID = "freshrec_daily"
SANDBOX = {"Content-Security-Policy": "sandbox allow-popups allow-popups-to-escape-sandbox"}
# A Data Docs page needs its scripts (bootstrap-table fills its lists, Vega draws its charts). They run in
# the sandbox's opaque origin: no cookie is readable or sent, the page cannot reach Airflow's API
# (connect-src 'none'), submit a form, navigate the UI's frame, or load anything but the site's own files.
DATA_DOCS_SANDBOX = {
    "Content-Security-Policy": "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox; "
    "default-src 'none'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'none'; form-action 'none'; base-uri 'none'"
}


def _store():
    """The store the workers write to (the same environment: FRESHREC_BUCKET, FRESHREC_S3_ENDPOINT, ...)."""
    from tasks.settings import settings

    s = settings()
    return _store_for(s.bucket, s.s3_endpoint)


@cache
def _store_for(bucket: str | None, endpoint: str | None):
    from tasks.store import Store

    return Store.from_env(load_params())


def _can_read_runs():
    """Airflow's check for reading the DAG's runs (needs Airflow's API server context)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID)


def _day(day: str) -> dt.date:
    try:
        return parse_day(day)
    except Exception as exc:
        raise HTTPException(404, f"{day!r} is not a day (YYYY-MM-DD)") from exc


def _page(title: str, body: str) -> HTMLResponse:
    style = (
        "body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}pre{background:#f6f6f6;padding:1rem}"
    )
    return HTMLResponse(
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _file(data: bytes, name: str, headers: dict) -> Response:
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(data, media_type=kind, headers={"X-Content-Type-Options": "nosniff", **headers})


def _table(head: list[str], rows: list[list]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    tr = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{tr}</table>"


def _evaluation_html(ev: dict) -> str:
    k = ev.get("k", 10)
    rows = []
    for name, block in ev.get("challenger", {}).items():
        champ = (ev.get("champion") or {}).get(name, {})
        rows.append([name, block.get("n"), champ.get(f"ndcg@{k}", "—"), block.get(f"ndcg@{k}"),
                     champ.get(f"hr@{k}", "—"), block.get(f"hr@{k}")])  # fmt: skip
    gate = ev.get("gate", {})
    return (
        f"<p><b>Gate</b>: {'passed' if gate.get('passed') else 'failed'} — {html.escape(str(gate.get('reason')))}</p>"
        f"<p>{ev.get('holdout_events')} held-out events, {ranking_note(ev)}.</p>"
        + _table(
            ["slice", "n", f"champion NDCG@{k}", f"challenger NDCG@{k}", f"champion HR@{k}", f"challenger HR@{k}"], rows
        )
    )


def _benchmark_html(b: dict) -> str:
    rows = [[r["runtime"], r["batch"], r["p50_ms"], r["p95_ms"], r["p99_ms"], round(r["qps"])] for r in b["rows"]]
    gate = b.get("gate", {})
    return (
        f"<p><b>Gate</b>: {'passed' if gate.get('passed') else 'failed'} — {html.escape(str(gate.get('reason')))}; "
        f"serving <code>{html.escape(str(b.get('serve_variant')))}</code>, {b.get('threads')} threads, "
        f"{html.escape(str(b.get('device')))}.</p>"
        + _table(["runtime", "batch", "p50 ms", "p95 ms", "p99 ms", "QPS"], rows)
    )


RENDER = {"evaluation": _evaluation_html, "benchmark": _benchmark_html}


def create_app() -> FastAPI:
    app = FastAPI(title="freshrec reports", docs_url=None, redoc_url=None, openapi_url=None)
    allowed = [Depends(_can_read_runs())]

    @app.exception_handler(HTTPException)
    async def login_first(request: Request, exc: HTTPException):
        """A browser that is not logged in goes to Airflow's login page, then back here."""
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/reports/", dependencies=allowed, response_class=HTMLResponse)
    def days():
        names = [n[5:] for n in _store().children(DAYS_PARENT) if n.startswith("date=")]
        items = "".join(f'<li><a href="{d}/">{d}</a></li>' for d in sorted(names, reverse=True))
        return _page("freshrec reports", f"<ul>{items}</ul>" if items else "<p>No day has reports yet.</p>")

    @app.get("/reports/{day}/", dependencies=allowed, response_class=HTMLResponse)
    def day_index(day: str):
        d = day_str(_day(day))
        store, found = _store(), []
        at = FOLDERS["validation"].format(day=d)
        validation = store.unit(at) or {}
        listed = validation.get("files", {})
        if "report.json" in listed:
            docs = json.loads(store.read(at, "report.json", validation)).get("docs")
            if docs:
                found.append(("Data Docs: the day's events (Great Expectations)", f"validation/{docs}"))
            if f"{DOCS_DIR}/items/index.html" in listed:
                found.append(("Data Docs: the day's catalogue", f"validation/{DOCS_DIR}/items/index.html"))
            found.append(("Validation report (JSON)", "validation/report.json"))
        if "drift.html" in (store.unit(FOLDERS["drift"].format(day=d)) or {}).get("files", {}):
            found += [("Drift report", "drift/drift.html"), ("Drift signals (JSON)", "drift/drift.json")]
        found += [(name.title(), name) for name, rel in PAGES.items() if store.exists(rel.format(day=d))]
        if not found:
            raise HTTPException(404, f"no reports for {d} in the object store: has the day run?")
        items = "".join(f'<li><a href="{html.escape(href)}">{html.escape(title)}</a></li>' for title, href in found)
        return _page(f"freshrec — {d}", f'<ul>{items}</ul><p><a href="../">all days</a></p>')

    @app.get("/reports/{day}/{kind}", dependencies=allowed)
    def page(day: str, kind: str):
        d = day_str(_day(day))
        if kind not in PAGES:
            raise HTTPException(404, f"unknown report {kind!r}: one of {sorted(PAGES)} or a folder {sorted(FOLDERS)}")
        data = _store().read(PAGES[kind].format(day=d))
        if data is None:
            raise HTTPException(404, f"{d} has no {kind} report: that step has not run for the day")
        report = json.loads(data)
        pretty = html.escape(json.dumps(report, indent=2))
        return _page(f"freshrec — {d} — {kind}", RENDER[kind](report) + f"<h2>JSON</h2><pre>{pretty}</pre>")

    @app.get(f"/reports/{{day}}/validation/{DOCS_DIR}/{{site}}/static/{{name:path}}")  # no session: see below
    def data_docs_static(day: str, site: str, name: str):
        """A Data Docs page's stylesheets, scripts, fonts and images. The page runs sandboxed in an opaque
        origin, so its browser sends no Airflow cookie for them: a file is served without a session only
        when its bytes are one of the vendored libraries or GX's own static files (nothing of the data)."""
        from tasks.datadocs import public_sha256

        d, rel = day_str(_day(day)), f"{DOCS_DIR}/{site}/static/{name}"
        at = FOLDERS["validation"].format(day=d)
        store = _store()
        snapshot = store.unit(at) or {}
        listed = snapshot.get("files", {}).get(rel)
        if listed is None or listed["sha256"] not in public_sha256():
            raise HTTPException(404, f"{d}: {rel!r} is not a Data Docs static file")
        # a day's URL, not the bytes' (a re-run may vendor other versions): cached an hour, never "immutable"
        public = {"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"}  # fonts: CORS
        return _file(store.read(at, rel, snapshot), name, public)

    @app.get("/reports/{day}/{folder}/{name:path}", dependencies=allowed)
    def folder_file(day: str, folder: str, name: str):
        d = day_str(_day(day))
        if folder not in FOLDERS:
            raise HTTPException(404, f"unknown report folder {folder!r}: one of {sorted(FOLDERS)}")
        data = _store().read(FOLDERS[folder].format(day=d), name)
        if data is None:
            raise HTTPException(404, f"{d}: no {folder} file {name!r} in the object store")
        # a report shows values from upstream data: it is rendered sandboxed (an origin of its own, no
        # scripts but a Data Docs page's), so nothing in it can act with the viewer's Airflow session
        sandbox = DATA_DOCS_SANDBOX if folder == "validation" and name.startswith(f"{DOCS_DIR}/") else SANDBOX
        return _file(data, name, sandbox)

    return app
