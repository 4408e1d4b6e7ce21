"""The reports plugin (serve/reports.py) in Airflow's own API server app: mounted through the
`airflow.plugins` entry point, behind Airflow's login, reading the day's reports from the store."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tasks.datadocs import ASSETS

DAY = dt.date(1997, 9, 30)
JQUERY = "jquery/dist/jquery.min.js"


@pytest.fixture
def reports(s3_env, params, layout):
    """A day's reports as the workers leave them in the object store."""
    from tasks.store import Store

    store = Store.from_env(params)
    val = layout.reports("validation", DAY)
    (val / "data_docs" / "validations").mkdir(parents=True)
    (val / "data_docs" / "validations" / "page.html").write_text("<html>expectations</html>")
    (val / "report.json").write_text(json.dumps({"docs": "data_docs/validations/page.html", "rows": 3}))
    static = val / "data_docs" / "events" / "static"
    (static / "vendor" / "jquery").mkdir(parents=True)
    (static / "vendor" / "jquery" / "jquery.min.js").write_bytes((ASSETS / JQUERY).read_bytes())
    (static / "values.json").write_text('["user 17", "user 18"]')  # not a public file: data under static/
    drift = layout.reports("drift", DAY)
    drift.mkdir(parents=True)
    (drift / "drift.html").write_text("<html>drift signals</html>")
    (drift / "drift.json").write_text("{}")
    for unit in (val, drift):
        store.push(layout.root, str(unit.relative_to(layout.root)))
    return store


@pytest.fixture
def login(monkeypatch, tmp_path):
    """Airflow with real logins (not the tests' everyone-is-admin mode): admin / a generated password."""
    users = tmp_path / "passwords.json"
    users.write_text(json.dumps({"admin": "s3cret-for-this-test"}))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(users))
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    purge_cached_app()
    yield TestClient(create_app(apps="core"), follow_redirects=False)
    purge_cached_app()


def test_reports_need_an_airflow_login_and_open_once_logged_in(reports, login, airflow_db):
    base = f"/freshrec/reports/{DAY}/"
    assert login.get(base, headers={"accept": "application/json"}).status_code == 401
    r = login.get(base, headers={"accept": "text/html"})
    assert r.status_code == 303 and "/auth/login" in r.headers["location"] and "next=" in r.headers["location"]
    token = login.post("/auth/token", json={"username": "admin", "password": "s3cret-for-this-test"}).json()
    auth = {"authorization": f"Bearer {token['access_token']}"}
    index = login.get(base, headers=auth)
    assert index.status_code == 200
    assert 'href="validation/data_docs/validations/page.html"' in index.text and 'href="drift/drift.html"' in index.text
    page = login.get(base + "validation/data_docs/validations/page.html", headers=auth)
    assert (
        page.status_code == 200
        and page.text == "<html>expectations</html>"
        and page.headers["content-type"].startswith("text/html")
    )
    login.cookies.set("_token", token["access_token"])  # the browser's way: the UI's session cookie
    drift = login.get(base + "drift/drift.html")
    assert drift.text == "<html>drift signals</html>"
    assert drift.headers["content-security-policy"].startswith("sandbox")  # upstream values never run as script
    assert DAY.isoformat() in login.get("/freshrec/reports/").text


def test_only_what_a_unit_lists_can_be_read(reports, login, airflow_db):
    token = login.post("/auth/token", json={"username": "admin", "password": "s3cret-for-this-test"}).json()
    login.cookies.set("_token", token["access_token"])
    base = f"/freshrec/reports/{DAY}/"
    assert login.get(base + "validation/../../../promote/manifest.json").status_code == 404
    assert login.get(base + "validation/UNIT.json").status_code == 404
    assert login.get(base + "models/x").status_code == 404
    assert login.get("/freshrec/reports/1998-13-40/").status_code == 404
    missing = login.get(base + "evaluation")
    assert missing.status_code == 404 and "has not run" in missing.json()["detail"]


def test_data_docs_run_their_scripts_sandboxed_and_load_only_public_files_without_a_session(reports, login, airflow_db):
    base = f"/freshrec/reports/{DAY}/validation/data_docs/"
    # a sandboxed page's origin is opaque: its browser sends no cookie for the files it loads
    lib = login.get(base + "events/static/vendor/jquery/jquery.min.js")
    assert lib.status_code == 200 and lib.content == (ASSETS / JQUERY).read_bytes()
    assert lib.headers["access-control-allow-origin"] == "*"  # fonts load in CORS mode
    assert lib.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert "immutable" not in lib.headers["cache-control"]  # a day's URL, not its bytes'
    for name in ("events/static/values.json", "events/static/missing.js", "events/static/%2e%2e/%2e%2e/report.json"):
        assert login.get(base + name).status_code == 404, name  # data is never public, whatever its path
    for name in ("events/static/../../report.json", "validations/page.html"):  # (the client resolves the ..)
        assert login.get(base + name).status_code == 401, name  # outside static/: a session, as ever
    token = login.post("/auth/token", json={"username": "admin", "password": "s3cret-for-this-test"}).json()
    login.cookies.set("_token", token["access_token"])
    assert login.get(base + "events/static/values.json").status_code == 404  # logged in too: not a static file
    csp = login.get(base + "validations/page.html").headers["content-security-policy"]
    assert "allow-scripts" in csp and "allow-same-origin" not in csp  # GX's tables fill; no session
    assert "connect-src 'none'" in csp and "form-action 'none'" in csp and "default-src 'none'" in csp
    drift = login.get(f"/freshrec/reports/{DAY}/drift/drift.html").headers["content-security-policy"]
    assert "allow-scripts" not in drift  # other reports run no script at all
