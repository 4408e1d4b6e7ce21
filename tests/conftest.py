"""Shared fixtures: a real SeaweedFS on loopback, tiny-but-real params, an isolated Airflow home.

Environment is set before anything imports Airflow, so Airflow's metadata DB (SQLite) and
config live in a per-session temp dir and the DAG folder is this checkout's `dags/`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="freshrec-tests-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_SESSION_DIR / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "SCARF_ANALYTICS": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
)

# a thread-timer backstop for pytest-timeout, whose SIGALRM Airflow clears (see tests/watchdog.py)
pytest_plugins = ["tests.watchdog"]

# tests/distributed starts a whole Celery cluster: `make test-distributed` runs it (and CI, via .ci/run)
collect_ignore = [] if os.environ.get("FRESHREC_TEST_DISTRIBUTED") else ["distributed"]
# tests/ui drives Debian's headless Chromium through the Airflow UI: `make test-ui` runs it (and CI)
collect_ignore += [] if os.environ.get("FRESHREC_TEST_UI") else ["ui"]

# Tiny model, short warm-up: the real code paths on a real ML-100K slice, in seconds.
WARMUP_END = "1997-09-29"
DAY1, DAY2 = "1997-09-30", "1997-10-01"


def tiny_params(tmp: Path) -> dict:
    from tasks.params import resolve

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["run"]["date"] = DAY1
    params["source"]["warmup_end"] = WARMUP_END
    params["source"]["landing_dir"] = str(tmp / "landing")
    params["train"].update(max_len=20, hidden_size=32, num_layers=1, num_heads=2, dropout=0.1)
    params["train"]["full"].update(epochs=3, batch_size=64, lr=0.003)
    params["train"]["incremental"].update(epochs=1, batch_size=64, replay_users=32)
    # 20 timed calls: their p99 is their slowest, one scheduler stall on a loaded CI machine (a stack test's
    # day failed at benchmark_latency under CI's load, 60 ms budget). The gate is tested with a budget nothing meets.
    params["benchmark"].update(warmup=3, iterations=20, p99_budget_ms=2000.0)
    params["evaluate"]["min_ndcg"] = 0.0  # a 3-epoch model is for plumbing, not for quality
    return resolve(params)  # as load_params gives them: validated, every default filled in


def from_store(params: dict, layout, path: Path) -> Path:
    """Pull the unit at `path` (under `layout`) from the object store and return `path`: what a DAG task
    wrote lives in the store; the task's own working directory went with it."""
    from tasks.store import Store

    Store.from_env(params).pull(layout.root, str(path.relative_to(layout.root)))
    return path


@pytest.fixture(scope="session", autouse=True)
def _session_dir_cleanup():
    """The session's Airflow home and S3 state go when the session ends (servers stop first)."""
    yield
    import shutil

    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def ml100k():
    """The real MovieLens-100K from the installed recbole package, loaded once."""
    from tasks.sources import load_dataset

    return load_dataset("ml-100k")


@pytest.fixture
def params(tmp_path) -> dict:
    return tiny_params(tmp_path)


@pytest.fixture
def layout(tmp_path):
    from tasks.common import Layout

    return Layout(tmp_path / "data")


@pytest.fixture
def write_params(tmp_path, monkeypatch):
    """Write params to a file and point FRESHREC_PARAMS / FRESHREC_DATA at this test's dirs."""

    def _write(p: dict) -> Path:
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(p))
        monkeypatch.setenv("FRESHREC_PARAMS", str(path))
        monkeypatch.setenv("FRESHREC_DATA", str(tmp_path / "data"))
        return path

    return _write


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="session")
def s3_server():
    """A real SeaweedFS S3 server on 127.0.0.1 for the whole session; stopped at the end."""
    from tasks.s3 import PORT_BLOCK, LocalS3

    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])  # each xdist worker its own port range
    first = int(os.environ.get("FRESHREC_TEST_S3_PORT", "18333")) + 1000 * worker  # each suite run at once its own
    base = next(p for p in range(first, first + 1000, 50) if all(_free(p + o) for o in range(PORT_BLOCK)))
    server = LocalS3(_SESSION_DIR / "s3", base).start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch, request):
    """Credentials for the session server and a fresh bucket per test."""
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    bucket = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-[]") + f"-{os.getpid()}"
    bucket = "".join(c if c.isalnum() or c == "-" else "-" for c in bucket)
    monkeypatch.setenv("FRESHREC_BUCKET", bucket)
    return bucket


class Webhook:
    """An incoming-webhook endpoint on 127.0.0.1 (a real HTTP server, in a thread): it keeps every JSON
    message POSTed to it, and answers `status` after `delay` seconds."""

    def __init__(self):
        import http.server
        import json
        import threading
        import time

        hook = self
        self.messages: list[dict] = []
        self.status, self.delay = 200, 0.0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.messages.append({"path": self.path, "type": self.headers.get("Content-Type"),
                                      **json.loads(body)})  # fmt: skip
                time.sleep(hook.delay)
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T000/not-to-be-logged"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of(self, event: str) -> list[dict]:
        return [m for m in self.messages if m["freshrec"]["event"] == event]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(monkeypatch):
    """FRESHREC_ALERT_WEBHOOK pointed at a local endpoint for this test; stopped after it."""
    hook = Webhook()
    monkeypatch.setenv("FRESHREC_ALERT_WEBHOOK", hook.url)
    yield hook
    hook.stop()


@pytest.fixture
def registry(s3_env, params):
    from tasks.promote import registry_from_env

    return registry_from_env(params)


def _quick_dag_test_polls() -> None:
    """dag.test() polls at 0.05 s instead of 1 s; every other sleep is left as it is.

    dag.test() is Airflow's scheduler loop in miniature: an iteration that finds no task to run sleeps
    1 s (`time.sleep(1)` in `Dag.test`, from a function-local `import time`). A failure or a skip reaches
    the tasks below it one level per iteration, so a run that stops at its first task spent 11 of its 32 s
    asleep, and the rejected and quarantined days as much. The runs are the same, only polled more often
    (an approval awaited in dag.test() too)."""
    import time

    from airflow.sdk.definitions.dag import DAG

    real_sleep, loop = time.sleep, DAG.test.__code__

    def sleep(seconds: float) -> None:
        real_sleep(0.05 if sys._getframe(1).f_code is loop else seconds)

    time.sleep = sleep


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata DB, migrated once per session; dag.test() polls at 0.05 s (_quick_dag_test_polls)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    _quick_dag_test_polls()
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture(scope="session")
def _bootstrap_image(s3_server):
    """The bootstrapped state, built once per session (a real bootstrap: history landed, ingested, validated,
    a champion trained, exported, benchmarked and promoted) in a bucket of its own; `bootstrapped` copies
    it into each test's fresh bucket and folders. Training is deterministic on CPU, so a copy is the same
    state a bootstrap in that test would have made."""
    from tasks.bootstrap import bootstrap
    from tasks.common import Layout

    base = _SESSION_DIR / "bootstrap-image"
    params = tiny_params(base)
    bucket = f"bootstrap-image-{os.getpid()}"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**s3_server.env(), "FRESHREC_BUCKET": bucket}.items():
            mp.setenv(k, v)
        base.mkdir(parents=True, exist_ok=True)
        path = base / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        mp.setenv("FRESHREC_PARAMS", str(path))
        mp.setenv("FRESHREC_DATA", str(base / "data"))
        record = bootstrap(params, Layout(base / "data"), progress=False)
    assert record["status"] == "promoted", record
    return {"base": base, "bucket": bucket, "record": record, "landing": Path(params["source"]["landing_dir"])}


def _copy_bucket(s3, source: str, dest: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=source)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    for key in keys:
        s3.copy_object(Bucket=dest, Key=key, CopySource={"Bucket": source, "Key": key})
    return len(keys)


@pytest.fixture
def bootstrapped(_bootstrap_image, params, layout, s3_env, write_params):
    """History landed and ingested through WARMUP_END and a bootstrapped champion in a fresh bucket
    (restored from the session's bootstrap image)."""
    import datetime as dt
    import shutil

    from tasks.s3 import client, ensure_bucket

    image = _bootstrap_image
    s3 = client()
    ensure_bucket(s3, s3_env)
    _copy_bucket(s3, image["bucket"], s3_env)
    shutil.copytree(image["landing"], params["source"]["landing_dir"], dirs_exist_ok=True)
    shutil.copytree(image["base"] / "data", layout.root, dirs_exist_ok=True)
    write_params(params)
    champion = image["record"]["version"]
    return {"layout": layout, "params": params, "champion": champion, "day1": dt.date.fromisoformat(DAY1)}


@pytest.fixture
def kill_upload_of(monkeypatch):
    """Inject a worker killed mid-promotion: `kill_upload_of("model.onnx")` makes the registry die
    (SystemExit) when it uploads that file; the returned `revive()` undoes it. A real store cannot fail
    on demand, so this is the one mock: the write never reaches SeaweedFS."""
    from tasks.registry import Registry

    real = Registry._put_new

    def arm(name: str):
        def killed(self, key, body, sha=None):
            if key.endswith(f"/{name}"):
                raise SystemExit("worker killed mid-upload")
            return real(self, key, body, sha)

        monkeypatch.setattr(Registry, "_put_new", killed)
        return lambda: monkeypatch.setattr(Registry, "_put_new", real)

    return arm


def pytest_collection_modifyitems(items):
    """Slow tests first (a stable sort: file order otherwise). With one xdist worker per core, the long runs
    start at once and the quick tests fill the gaps at the end (longest first), instead of a 70 s
    `dvc repro` starting last on one worker while the other sits idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
