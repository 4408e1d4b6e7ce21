"""The serving tier against a real SeaweedFS and a real `python -m serve` on 127.0.0.1 (stopped by PID).

`champion_bucket` restores only the registry (models/) of the session's bootstrap image into a bucket;
`Server` runs the service as its users do, as a subprocess with flags, and talks plain HTTP to it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path, *flags: str, env: dict | None = None):
        self.port = free_port()
        self.log = tmp / f"serve-{self.port}.log"
        cmd = [sys.executable, "-m", "serve", "--port", str(self.port), "--poll", "0.2",
               "--cache-dir", str(tmp / f"cache-{self.port}"), *flags]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def request(self, method: str, path: str, body=None, headers: dict | None = None, timeout: float = 10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            raw = resp.read()
            ctype = resp.getheader("Content-Type", "")
            return resp.status, (json.loads(raw) if "json" in ctype else raw.decode())
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def champion_bucket(_bootstrap_image, s3_env):
    """The bootstrap's registry (champion pointer, version, history) alone, in this test's fresh bucket."""
    from tasks.s3 import client, ensure_bucket

    s3 = client()
    ensure_bucket(s3, s3_env)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=_bootstrap_image["bucket"], Prefix="models/")
    for key in [o["Key"] for page in pages for o in page.get("Contents", [])]:
        s3.copy_object(Bucket=s3_env, Key=key, CopySource={"Bucket": _bootstrap_image["bucket"], "Key": key})
    return s3_env


@pytest.fixture
def serve(tmp_path, champion_bucket):
    """Start `python -m serve` with extra flags; every server started is stopped at the end."""
    started: list[Server] = []

    def _start(*flags: str, env: dict | None = None, ready: bool = True) -> Server:
        server = Server(tmp_path, "--bucket", champion_bucket, *flags, env=env)
        started.append(server)
        return server.wait_ready() if ready else server

    yield _start
    for server in started:
        server.stop()
