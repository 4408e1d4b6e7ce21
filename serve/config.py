"""The service's settings: one frozen object, from the command line, handed to each worker process.

`python -m serve` parses its flags into a `ServeConfig` and passes it to the uvicorn workers it spawns
as JSON in one environment variable (`FRESHREC_SERVE_CONFIG`); the registry's endpoint, bucket and
credentials come from the same environment as every other freshrec process (tasks/settings.py). The
bearer token is a credential, read here only: `--token-file` (0600) or FRESHREC_SERVE_TOKEN.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

ENV = "FRESHREC_SERVE_CONFIG"


class ConfigError(ValueError):
    """A setting the service cannot start with; the message says which and what to do."""


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # processes; one per core is the measured best (docs/serving.md)
    threads: int = 1  # ONNX Runtime intra-op threads per worker
    poll: float = 5.0  # seconds between pointer reads
    stale_polls: int = 3  # not ready once the pointer was not read for this many polls
    max_body: int = 1 << 20  # bytes; 413 above
    max_history: int = 10_000  # ids per user; the model sees its window's worth of the newest
    max_batch: int = 256  # users per /recommend/batch
    batching: bool = True  # score concurrent /recommend requests together (serve/batching.py)
    batch_wait_ms: float = 0.0  # with batching: how long an idle model waits for batch-mates (0: not at all)
    batch_rows: int = 32  # rows per micro-batch
    header_timeout: float = 10.0  # a request's headers must arrive within this (408, closed)
    read_timeout: float = 10.0  # a request's body must have arrived within this (408)
    keep_alive: float = 5.0  # an idle keep-alive connection is closed after this
    max_connections: int = 2048  # per worker: 503 beyond it (uvicorn limit_concurrency)
    drain_timeout: float = 30.0  # SIGTERM: in-flight requests get this long to finish
    cache_dir: str | None = None  # where versions are downloaded (one folder per worker process)
    token_file: str | None = None  # bearer token for the recommend routes (0600 file)
    model: str = "seqrec"
    bucket: str | None = None

    def __post_init__(self):
        if self.batch_wait_ms < 0:
            raise ConfigError(f"batch_wait_ms must be 0 or positive, got {self.batch_wait_ms}")
        for name in ("workers", "threads", "max_body", "max_history", "max_batch", "max_connections",
                     "batch_rows"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("poll", "header_timeout", "read_timeout", "keep_alive", "drain_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive seconds, got {getattr(self, name)}")

    @property
    def stale_after(self) -> float:
        return self.poll * self.stale_polls

    def to_env(self) -> dict[str, str]:
        return {ENV: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls) -> ServeConfig:
        raw = os.environ.get(ENV)
        return cls(**json.loads(raw)) if raw else cls()

    def token(self) -> str | None:
        """The bearer token the recommend routes require, or None for none: from `token_file` (which must
        be 0600 or stricter) or FRESHREC_SERVE_TOKEN. Never logged."""
        if self.token_file:
            path = Path(self.token_file)
            try:
                mode = stat.S_IMODE(path.stat().st_mode)
                text = path.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
            if mode & 0o077:
                raise ConfigError(f"the token file {path} is readable by others ({oct(mode)}): chmod 600 {path}")
            if not text:
                raise ConfigError(f"the token file {path} is empty")
            return text
        return os.environ.get("FRESHREC_SERVE_TOKEN") or None  # a credential: read by its user only
