"""A real Airflow on 127.0.0.1, in two stacks: LocalExecutor (every task on the scheduler's machine and
disk, as under `make airflow`), and CeleryExecutor with Redis and two workers (`default` and `gpu`
queues, two slots each). Both keep their metadata in PostgreSQL; each component has its own empty
working directory and AIRFLOW_HOME, as if on separate machines; all state between tasks is in
SeaweedFS. Every server is started here and stopped by PID at the end."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKERS = {"worker-cpu": "default", "worker-gpu": "gpu"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, what: str, timeout: float = 120, proc_logs: dict | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # not up yet
            if check():
                return
        time.sleep(1)
    tails = "".join(f"\n--- {n}\n{p.read_text()[-2000:]}" for n, p in (proc_logs or {}).items() if p.exists())
    raise TimeoutError(f"{what} did not come up within {timeout}s{tails}")


class Cluster:
    def __init__(self, base: Path, env: dict, pg_dsn: str, executor: str = "local"):
        self.base, self.env, self.pg_dsn, self.executor = base, env, pg_dsn, executor
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def component_env(self, name: str) -> dict:
        home = self.base / name
        (home / "airflow").mkdir(parents=True, exist_ok=True)
        return {
            **self.env,
            "AIRFLOW_HOME": str(home / "airflow"),
            "FRESHREC_DATA": str(home / "data"),
            "FRESHREC_WORKER": name,
        }

    def start(self, name: str, cmd: list[str]) -> None:
        env = self.component_env(name)
        self.logs[name] = self.base / f"{name}.log"
        self.procs[name] = subprocess.Popen(
            cmd,
            cwd=self.base / name,
            env=env,
            stdout=self.logs[name].open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def airflow(self, *args: str, timeout: float = 180) -> str:
        res = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            check=False,
            env=self.component_env("cli"),
            cwd=self.base / "cli",
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if res.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res.stdout

    def sql(self, query: str, *args) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(self.pg_dsn) as conn, conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()

    def task_logs(self, tries: list[tuple], n: int = 4000) -> str:
        """The end of each (dag_id, task_id, try_number)'s log, on whichever component's disk it ran."""
        out = []
        for dag_id, task_id, try_number in tries:
            pattern = f"*/airflow/logs/dag_id={dag_id}/*/task_id={task_id}/attempt={try_number}.log*"
            for path in sorted(self.base.glob(pattern)):
                out.append(f"\n--- {path.relative_to(self.base)}\n{path.read_text(errors='replace')[-n:]}")
            for name, path in self.logs.items():  # what the scheduler, a worker or the API server said of it
                said = [line for line in path.read_text(errors="replace").splitlines() if task_id in line]
                out += [f"\n--- {name} on {task_id}\n" + "\n".join(said[-15:])] if said else []
        return "".join(out) or "\n(no task log found)"

    def tails(self, n: int = 3000) -> str:
        return "".join(f"\n--- {name}\n{path.read_text()[-n:]}" for name, path in self.logs.items() if path.exists())

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time of each component's whole process tree so far (its own, its live children's, and what
        its exited children left in their parents' `cutime`): where the stack's CPU went."""
        tick = os.sysconf("SC_CLK_TCK")
        return {name: sum(sum(int(f) for f in fields[11:15]) for _, fields in _session(proc.pid)) / tick
                for name, proc in self.procs.items()}  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # a report only
            print(f"\n[{self.executor}] CPU seconds by component:", self.cpu_seconds())
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            # then whatever is left of its session: its group (under the forkserver start method a LocalExecutor
            # worker was seen outliving the scheduler's SIGTERM, idle, for good) and the task processes Airflow
            # puts in groups of their own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            for pid, _ in _session(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()


def _session(sid: int) -> list[tuple[int, list[str]]]:
    """The live processes of session `sid` (a component started with `start_new_session` and everything it
    started), each with its /proc stat fields after the command name."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:
                out.append((int(stat.parent.name), fields))
    return out


def _postgres(base: Path):
    """Debian's PostgreSQL on 127.0.0.1, as `make airflow` runs it (tasks/postgres.py)."""
    from tasks.common import FreshrecError
    from tasks.postgres import LocalPostgres

    server = LocalPostgres(base / "pg", _free_port())
    try:
        return server.start()
    except FreshrecError as exc:
        pytest.fail(f"{exc} (`make test-distributed` installs the server)")


def _redis(base: Path, password: str):
    exe = shutil.which("redis-server")
    if not exe:
        pytest.fail("redis-server is missing: `make test-distributed` installs it (Debian package redis-server)")
    port = _free_port()
    conf = base / "redis.conf"
    conf.write_text(
        f'port {port}\nbind 127.0.0.1\nprotected-mode yes\nsave ""\nappendonly no\ndir {base}\nrequirepass {password}\n'
    )
    conf.chmod(0o600)
    proc = subprocess.Popen(
        [exe, str(conf)], stdout=(base / "redis.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )

    def up():
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    _wait(up, "Redis", 30, {"redis": base / "redis.log"})
    return proc, port


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module", params=["local", "celery"])
def cluster(s3_server, request):
    """`local`: LocalExecutor on PostgreSQL, every task on the scheduler's machine and disk (a laptop,
    `make airflow`); `celery`: CeleryExecutor, Redis, two workers with two slots each on their own disks."""
    from tests.conftest import tiny_params

    executor = request.param
    base = Path(tempfile.mkdtemp(prefix=f"freshrec-{executor}-", dir="/tmp"))
    base.chmod(0o755)  # the postgres user must reach its data dir
    with contextlib.ExitStack() as cleanup:  # whatever fails, the set-up included: all stopped
        cleanup.callback(lambda: None if os.environ.get("FRESHREC_KEEP_CLUSTER") else shutil.rmtree(base, True))
        pg = _postgres(base)
        cleanup.callback(pg.stop)
        redis_pw = secrets.token_urlsafe(18)
        redis, redis_port = _redis(base, redis_pw) if executor == "celery" else (None, None)
        if redis is not None:
            cleanup.callback(_stop, redis)
        api_port = _free_port()
        bucket = f"cluster-{executor}-{os.getpid()}"
        params = tiny_params(base)
        params["evaluate"]["max_ndcg_drop"] = 1.0  # tiny models: promotion is what is under test
        params["source"]["landing_dir"] = f"s3://{bucket}/landing"
        (base / "params.yaml").write_text(yaml.safe_dump(params))
        import datetime as dt

        # the data window ends two days after the tiny slice's first daily day; unpausing schedules yesterday's
        # run, outside it, which is skipped at its first task and stays out of the way
        end = dt.date.fromisoformat(params["run"]["date"]) + dt.timedelta(days=3)
        env = {
            **os.environ,
            **s3_server.env(),
            "PYTHONPATH": str(ROOT),
            "FRESHREC_BUCKET": bucket,
            "FRESHREC_PARAMS": str(base / "params.yaml"),
            "FRESHREC_LANDING_DIR": f"s3://{bucket}/landing",
            "FRESHREC_BASE_POKE_SECONDS": "2",  # a day goes on within 2 s of its base
            "FRESHREC_END_DATE": str(end),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.distributed.hostname.worker_name",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
        if executor == "celery":
            env |= {
                "FRESHREC_TRAIN_QUEUE": "gpu",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://:{redis_pw}@127.0.0.1:{redis_port}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg.url(),
            }
        else:
            env |= {"AIRFLOW__CORE__EXECUTOR": "tasks.local_executor.LocalExecutor"}
        c = Cluster(base, env, pg.url("postgresql"), executor)
        try:
            (base / "cli").mkdir()
            c.airflow("db", "migrate", timeout=300)
            c.start(
                "api-server",
                [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(api_port)],
            )
            c.start("scheduler", [sys.executable, "-m", "airflow", "scheduler", "--skip-serve-logs"])
            c.start("dag-processor", [sys.executable, "-m", "airflow", "dag-processor"])
            c.start("triggerer", [sys.executable, "-m", "airflow", "triggerer", "--skip-serve-logs"])  # days wait there
            for name, queue in WORKERS.items() if executor == "celery" else ():
                c.start(
                    name,
                    [
                        sys.executable,
                        "-m",
                        "airflow",
                        "celery",
                        "worker",
                        "--queues",
                        queue,
                        "--concurrency",
                        "2",
                        "--skip-serve-logs",
                        "--celery-hostname",
                        f"{name}@%h",
                    ],
                )
            import urllib.request

            _wait(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v2/version", timeout=2),
                "the Airflow API server",
                180,
                c.logs,
            )
            _wait(
                lambda: (
                    {"freshrec_daily", "freshrec_bootstrap"}
                    <= {r[0] for r in c.sql("select dag_id from dag where is_stale is not true")}
                ),
                "the DAG processor (DAGs in the metadata DB)",
                180,
                c.logs,
            )
            yield c
        finally:
            c.stop()  # then Redis, PostgreSQL, and the folder (kept with FRESHREC_KEEP_CLUSTER, to read the logs)


def run_states(c: Cluster, dag_id: str) -> dict[str, str]:
    return {str(r[0].date()): r[1] for r in c.sql("select logical_date, state from dag_run where dag_id=%s", dag_id)}


def wait_runs(c: Cluster, dag_id: str, days: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = run_states(c, dag_id)
        if all(states.get(d) in ("success", "failed") for d in days):
            return states
        time.sleep(3)
    raise TimeoutError(f"{dag_id} runs {days} did not finish in {timeout}s: {run_states(c, dag_id)}")


def timeline(c: Cluster, dag_id: str) -> str:
    """Each task of each run: when it started (s after the first task of all) and how long its last try
    ran, a wait in the triggerer included: where the first hour's wall time goes."""
    rows = c.sql(
        "select coalesce(r.logical_date::date::text, r.dag_id), t.task_id, t.start_date, t.end_date "
        "from task_instance t join dag_run r on t.dag_id = r.dag_id and t.run_id = r.run_id "
        "where t.dag_id in (%s, 'freshrec_bootstrap') and t.start_date is not null order by t.start_date",
        dag_id,
    )
    if not rows:
        return ""
    t0 = rows[0][2]
    return "\n".join(
        f"{day:18} {task:24} +{(start - t0).total_seconds():6.0f} s "
        f"{(end - start).total_seconds() if end else float('nan'):6.1f} s"
        for day, task, start, end in rows
    )


def task_hosts(c: Cluster, dag_id: str) -> list[tuple]:
    return c.sql(
        "select r.logical_date, t.task_id, t.state, t.hostname from task_instance t join dag_run r "
        "on t.dag_id = r.dag_id and t.run_id = r.run_id where t.dag_id=%s",
        dag_id,
    )
