"""Airflow as `make airflow` runs it (API server + UI, scheduler with LocalExecutor, DAG processor,
triggerer; SQLite), on a free port with real logins: an admin whose password is generated into a
0600 file. A champion is bootstrapped and two days are landed, so daily runs reach their approvals.
Every server is started here and stopped by PID (process group) at the end."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import DAY1, DAY2
from tests.distributed.conftest import Cluster, _free_port, _wait

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("FRESHREC_UI_SHOTS", ROOT / ".run" / "ui-screenshots"))


class Stack(Cluster):
    """The Airflow components, each with its own working directory; `url`, `password`, `rest()`."""

    url: str
    password: str

    def _http(self, method: str, path: str, body: dict | None, headers: dict) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)  # noqa: S310 (http://127.0.0.1)
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return json.loads(resp.read() or b"{}")

    def rest(self, method: str, path: str, body: dict | None = None) -> dict:
        """The REST API as admin (a bearer token from /auth/token)."""
        json_type = {"content-type": "application/json"}
        if getattr(self, "_token", None) is None:
            login = {"username": "admin", "password": self.password}
            self._token = self._http("POST", "/auth/token", login, json_type)["access_token"]
        return self._http(method, path, body, {**json_type, "authorization": f"Bearer {self._token}"})

    def history(self) -> list[dict]:
        """The promotion history (promotions, rejections) as the registry holds it in the stack's store."""
        code = (
            "import json; from tasks.params import load_params; from tasks.registry import registry_from_env; "
            "print(json.dumps(registry_from_env(load_params()).history()))"
        )
        return json.loads(self.run("cli", "-c", code).strip().splitlines()[-1])

    def run(self, name: str, *args: str, timeout: float = 600) -> str:
        res = subprocess.run(
            [sys.executable, *args],
            env=self.component_env(name),
            cwd=self.base / name,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if res.returncode:
            raise RuntimeError(f"{' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res.stdout


@pytest.fixture(scope="module")
def stack(s3_server):
    from tasks.common import write_secret
    from tasks.postgres import LocalPostgres
    from tests.conftest import tiny_params

    base = Path(tempfile.mkdtemp(prefix="freshrec-ui-", dir="/tmp"))
    base.chmod(0o755)  # the postgres user must reach its data dir
    port, bucket = _free_port(), f"ui-{os.getpid()}"
    pg = LocalPostgres(base / "pg", _free_port())  # as `make airflow` runs it; started below
    params = tiny_params(base)
    params["evaluate"]["max_ndcg_drop"] = 1.0  # tiny models: the approval is what is under test
    params["source"]["landing_dir"] = f"s3://{bucket}/landing"
    (base / "params.yaml").write_text(yaml.safe_dump(params))
    password = secrets.token_urlsafe(18)
    write_secret(base / "passwords.json", json.dumps({"admin": password}))
    env = {
        **os.environ,
        **s3_server.env(),
        "PYTHONPATH": str(ROOT),
        "FRESHREC_BUCKET": bucket,
        "FRESHREC_PARAMS": str(base / "params.yaml"),
        "FRESHREC_LANDING_DIR": f"s3://{bucket}/landing",
        "FRESHREC_BASE_POKE_SECONDS": "2",  # a day goes on within 2 s of its base
        "AIRFLOW__CORE__EXECUTOR": "tasks.local_executor.LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(base / "passwords.json"),
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    c, t0 = None, time.monotonic()
    try:  # whatever fails from here, the set-up included, everything started is stopped
        pg.start()
        c = Stack(base, env, pg.url("postgresql"))
        c.url, c.password = f"http://127.0.0.1:{port}", password
        (base / "cli").mkdir()
        # the champion the first day builds on, trained while Airflow migrates and starts: it needs only S3
        c.start("bootstrap", [sys.executable, "-m", "tasks.bootstrap"])
        c.airflow("db", "migrate", timeout=300)
        api = [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)]
        c.start("api-server", api)
        c.start("scheduler", [sys.executable, "-m", "airflow", "scheduler", "--skip-serve-logs"])
        c.start("dag-processor", [sys.executable, "-m", "airflow", "dag-processor"])
        c.start("triggerer", [sys.executable, "-m", "airflow", "triggerer", "--skip-serve-logs"])
        _wait(lambda: c._http("GET", "/api/v2/version", None, {}), "the Airflow API server", 180, c.logs)
        print(f"\n[ui] Airflow up: {time.monotonic() - t0:.0f} s")
        if c.procs["bootstrap"].wait(600):
            raise RuntimeError(f"the bootstrap failed:\n{c.logs['bootstrap'].read_text()[-3000:]}")
        del c.procs["bootstrap"]  # done: not a component to report or stop
        print(f"[ui] bootstrapped: {time.monotonic() - t0:.0f} s")
        (base / "upstream").mkdir()
        for day in (DAY1, DAY2):  # the upstream lands two days: one to approve, one to reject
            c.run("upstream", "-m", "tasks.replay", "--date", day)
        _wait(lambda: c.rest("GET", "/api/v2/dags/freshrec_daily"), "the DAG processor (freshrec_daily)", 180, c.logs)
        print(f"[ui] two days landed, the DAG parsed: {time.monotonic() - t0:.0f} s")
        yield c
    finally:
        if c is not None:
            c.stop()
        pg.stop()
        if not os.environ.get("FRESHREC_KEEP_UI"):  # set it to read the components' logs afterwards
            shutil.rmtree(base, ignore_errors=True)
