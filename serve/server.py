"""Run the app under uvicorn (httptools, uvloop), with the limits uvicorn lacks.

uvicorn closes an idle keep-alive connection, but a connection that sends its request line and headers
slowly (or never finishes them) is held for ever. `GuardedHttpTools` gives each request a header
deadline: from the connection's start (or the previous response's end, plus the keep-alive time) its
headers must be complete within `header_timeout` seconds, or it gets 408 and is closed. A body that stops
arriving is the app's `read_timeout` (serve/app.py); the number of connections per worker is
`max_connections` (503 beyond it). SIGTERM drains: the listening socket closes at once (new connections
are refused), requests in flight finish (up to `drain_timeout`), then the process exits.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serve.config import ServeConfig

LOG = logging.getLogger("serve")
BUSY = b'{"error":"this worker holds --max-connections connections: retry, or scale out (docs/serving.md)"}'


async def _busy(scope, receive, send) -> None:
    """What a worker answers beyond `max_connections` (uvicorn's `limit_concurrency`): JSON like every other
    error. uvicorn answers it with the app its protocol module names `service_unavailable` (plain text);
    this is put there when this module is imported, in each worker (tests/serve/test_limits.py holds it)."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BUSY)).encode()),
               (b"connection", b"close"), (b"retry-after", b"1")]  # fmt: skip
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": BUSY, "more_body": False})


httptools_impl.service_unavailable = _busy


class GuardedHttpTools(HttpToolsProtocol):
    """HttpToolsProtocol with a deadline on each request's headers (the config from the environment)."""

    header_timeout = ServeConfig.from_env().header_timeout

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._deadline = None
        self._arm(self.header_timeout)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # a request is being answered: its body has its own timeout in the app
        msg = b'{"error":"the request headers did not arrive in time: send them at once"}'
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(msg)).encode() + b"\r\n\r\n" + msg
        )
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._arm(self.timeout_keep_alive + self.header_timeout)

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)


def run(config: ServeConfig, loop: str = "uvloop", http: str | type = GuardedHttpTools) -> None:
    """Serve until SIGTERM/SIGINT; `config.workers` processes share the listening socket. `loop` and `http`
    are uvicorn's; bench/serve_load.py `--stacks` measures the others (h11 has no header deadline: not a flag)."""
    import uvicorn

    os.environ.update(config.to_env())  # spawned workers build their app (and the protocol) from it
    GuardedHttpTools.header_timeout = config.header_timeout  # this process imported it before
    config.token()  # a bad token file stops the start here, with its reason
    multiproc = None
    if config.workers > 1:  # one metrics view over all workers (serve/metrics.py)
        multiproc = tempfile.mkdtemp(prefix="freshrec-serve-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc
    try:
        uvicorn.run(
            "serve.app:create_app",
            factory=True,
            host=config.host,
            port=config.port,
            workers=config.workers,
            http=http,
            loop=loop,
            lifespan="on",
            timeout_keep_alive=int(config.keep_alive),
            timeout_graceful_shutdown=int(config.drain_timeout),
            limit_concurrency=config.max_connections,
            access_log=False,
            server_header=False,
            log_level="info",
        )
    finally:
        if multiproc:
            shutil.rmtree(multiproc, ignore_errors=True)
