"""`core.hostname_callable` for the distributed test: each Celery worker names itself (all run on
one host here), so the test can tell which worker ran each task instance."""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("FRESHREC_WORKER") or socket.getfqdn()
