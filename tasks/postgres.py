"""The local PostgreSQL that holds Airflow's metadata under `make airflow` and the cluster tests.

SQLite serialises every writer: with a scheduler, an API server, a triggerer and a CLI at once,
`airflow backfill create` failed with `database is locked` and REST state changes answered 500. This is
Debian's PostgreSQL (the `postgresql` package; `initdb`, `pg_ctl` and `postgres` from
/usr/lib/postgresql/<v>/bin), started on 127.0.0.1 only, password-authenticated (scram-sha-256), its
password generated once into a 0600 file and printed only by `env`, for `eval`.

    python -m tasks.postgres start|stop|status|env [--state-dir .run/postgres] [--port 15432]

PostgreSQL refuses to run as root: as root the server runs as the `postgres` user, which owns the data
directory (and needs to traverse the path to it).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tasks.common import PROJECT_ROOT, FreshrecError, port_open, write_secret

RUN_DIR = PROJECT_ROOT / ".run" / "postgres"
USER = "airflow"  # the database role and database name
SERVER_USER = "postgres"  # the OS user the server runs as when we are root


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise FreshrecError(
            f"PostgreSQL's `{name}` is missing: install Debian's server package (`apt-get install -y postgresql`); "
            "Airflow's metadata needs a database that takes concurrent writers"
        )
    return found


@dataclass
class LocalPostgres:
    state_dir: Path = RUN_DIR
    port: int = 15432

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    def password(self) -> str:
        path = self.state_dir / "password"
        if not path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            write_secret(path, secrets.token_urlsafe(24))
        return path.read_text().strip()

    def url(self, driver: str = "postgresql+psycopg2", database: str = USER) -> str:
        return f"{driver}://{USER}:{self.password()}@127.0.0.1:{self.port}/{database}"

    def env(self) -> dict[str, str]:
        return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.url()}

    def _as_server(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", SERVER_USER, "--", *cmd] if os.geteuid() == 0 else cmd

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, SERVER_USER, SERVER_USER)

    def running(self) -> bool:
        return port_open(self.port)

    def _pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None

    def _init(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise FreshrecError(f"no `{SERVER_USER}` user: Debian's `postgresql` package creates it") from None
            for parent in self.state_dir.parents:  # the server must reach its directory
                if parent.stat().st_mode & 0o001 == 0:
                    parent.chmod(parent.stat().st_mode | 0o001)  # traverse only: nothing becomes readable
        self._own(self.state_dir)
        pwfile = self.state_dir / ".initdb-pw"
        write_secret(pwfile, self.password())
        self._own(pwfile)
        try:
            res = subprocess.run(
                self._as_server(
                    [
                        _binary("initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        USER,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--no-instructions",
                    ]
                ),
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise FreshrecError(f"initdb failed in {self.data_dir}: {res.stderr.strip()[-800:]}")

    def start(self, timeout: float = 60.0) -> LocalPostgres:
        if self.running():
            if self._pid() is None:
                raise FreshrecError(f"port {self.port} is taken by another program: stop it or pick another port")
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            self._init()
        log = self.state_dir / "postgres.log"
        log.touch()
        self._own(log)
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.state_dir}"
        res = subprocess.run(
            self._as_server(
                [
                    _binary("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(log),
                    "-o",
                    opts,
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise FreshrecError(f"PostgreSQL did not start on 127.0.0.1:{self.port}: see {log}\n{res.stdout[-800:]}")
        self._create_database()
        return self

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.url("postgresql", database="postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (USER,))
                if cur.fetchone() is None:
                    cur.execute(f"CREATE DATABASE {USER}")
        finally:
            conn.close()

    def stop(self, timeout: float = 30.0) -> None:
        pid = self._pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGINT)  # "fast" shutdown: roll back open transactions, exit cleanly
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.2)
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> None:
    from tasks.common import local_server_cli
    from tasks.settings import settings

    local_server_cli(argv, __doc__, LocalPostgres, settings().pg_port, RUN_DIR,
                     lambda s: f"PostgreSQL on 127.0.0.1:{s.port} (state in {s.state_dir})")  # fmt: skip


if __name__ == "__main__":
    main()
