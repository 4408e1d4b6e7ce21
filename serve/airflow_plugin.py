"""The Airflow 3 plugin that serves each day's reports from the API server (serve/reports.py).

Registered through the `airflow.plugins` entry point in pyproject.toml, so every API server that
has freshrec installed (`make venv`, the docker images) mounts it; nothing to copy into a plugins
folder. Also adds a "freshrec reports" link to the UI's navigation.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from tasks.reports import PREFIX


class FreshrecReportsPlugin(AirflowPlugin):
    name = "freshrec_reports"

    @property
    def fastapi_apps(self):  # built on first use: the app reads the object store, not at import
        from serve.reports import create_app

        return [{"app": create_app(), "url_prefix": PREFIX, "name": "freshrec reports"}]

    # with a url_route the UI shows the index inside its own page (an iframe of the same origin, the same
    # login) at /plugin/freshrec-reports; without one, its nav entry is an external link, which did not open
    external_views = (
        {"name": "freshrec reports", "href": f"{PREFIX}/reports/", "destination": "nav",
         "url_route": "freshrec-reports"},
    )  # fmt: skip
