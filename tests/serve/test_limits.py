"""A slow or hostile client cannot starve the others (serve/server.py, serve/app.py): headers that never
finish and bodies that stop are cut off with 408, idle connections cost no thread, and well-formed
requests are answered while 200 slow connections are held open."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(4096):
            out += chunk
    except TimeoutError:
        pass
    return out


def test_headers_that_never_finish_get_408_and_are_closed(serve):
    s = serve("--header-timeout", "1")
    with socket.create_connection(("127.0.0.1", s.port)) as sock:
        sock.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        t0 = time.monotonic()
        answer = _read_all(sock, 10)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"content-type: application/json" in answer and b'"error":"the request headers did not' in answer
        assert time.monotonic() - t0 < 5
    with socket.create_connection(("127.0.0.1", s.port)) as sock:  # trickled bytes do not reset the deadline
        t0 = time.monotonic()
        try:
            for c in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:  # 14 s at 0.1 s a byte
                sock.sendall(bytes([c]))
                time.sleep(0.1)
        except OSError:  # the server closed the connection
            pass
        assert time.monotonic() - t0 < 5, "a client trickling header bytes kept its connection"


def test_a_body_shorter_than_its_length_gets_408(serve):
    s = serve("--read-timeout", "1")
    with socket.create_connection(("127.0.0.1", s.port)) as sock:
        sock.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n" + b'{"history": [')  # fmt: skip
        answer = _read_all(sock, 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"stopped arriving" in answer


def test_200_slow_connections_do_not_starve_well_formed_requests(serve):
    s = serve("--header-timeout", "3")
    threads = _threads(s.proc.pid)
    slow = []
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    try:
        assert _threads(s.proc.pid) <= threads + 2  # connections are not threads
        t0 = time.monotonic()
        for _ in range(100):
            status, body = s.request("POST", "/recommend", {"history": ["1", "2"]}, timeout=5)
            assert status == 200, body
        assert time.monotonic() - t0 < 2.5, "100 requests beside 200 slow connections took too long"
        # and the slow ones are cut off once their deadline passes
        assert all(_read_all(sock, 10).startswith(b"HTTP/1.1 408") for sock in slow[:5])
    finally:
        for sock in slow:
            sock.close()


def test_connections_over_the_bound_get_a_json_503_and_the_others_are_served(serve):
    """`--max-connections` per worker (uvicorn's limit_concurrency): one connection over it gets a JSON 503
    that says what to do; once connections close, requests are served again."""
    s = serve("--workers", "1", "--max-connections", "4")
    idle = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(4)]
    try:
        time.sleep(0.3)  # the worker has accepted them
        status, body = s.request("GET", "/healthz")
        assert status == 503 and "--max-connections" in body["error"], body
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while s.request("GET", "/healthz")[0] != 200:
        assert time.monotonic() < deadline, "closed connections still count against the bound"
        time.sleep(0.1)
