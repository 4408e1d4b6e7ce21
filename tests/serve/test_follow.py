"""The service follows the champion pointer (serve/champion.py) on a real registry: every answer names
the model that scored it, also while the pointer moves under load; a tampered version is refused while
the old one serves on; readiness turns false when the pointer cannot be read; SIGTERM drains."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest

from bench.serve_load import second_version
from serve.model import FILES, Model

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
HISTORY = ["1", "2", "3"]


def _expected(registry, version: str, folder) -> list[str]:
    """What `version` answers for HISTORY, computed here from its verified files."""
    pointer, _ = registry.pointer()
    registry.download(version, folder, [pointer["serve_file"], *FILES])
    model = Model.load(folder, version, pointer["serve_file"], None, 1)
    enc = model.encode([HISTORY])
    scores, idx = model.score(enc.inputs)
    return [item for item, _ in model.top(scores[0], idx[0], 10, None)]


def test_every_answer_names_the_model_that_scored_it_while_the_pointer_moves(serve, registry, tmp_path):
    first = registry.pointer()[0]["version"]
    second = "2099-01-01-feedbeef"
    second_version(registry, tmp_path, second)
    expected = {v: _expected(registry, v, tmp_path / v) for v in (first, second)}
    assert expected[first] != expected[second]
    s = serve()
    answers, errors, stop = [], [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                status, body = s.request("POST", "/recommend", {"history": HISTORY, "k": 10})
                answers.append((status, body.get("version"), [r["item"] for r in body.get("items", [])]))
            except OSError as exc:
                errors.append(exc)

    clients = [threading.Thread(target=client) for _ in range(4)]
    for t in clients:
        t.start()
    try:
        for n in range(10):  # ten moves of the pointer under load
            registry.set_champion(second if n % 2 == 0 else first, "tester", f"flip {n}")
            target = second if n % 2 == 0 else first
            deadline = time.monotonic() + 15
            while s.request("GET", "/version")[1]["version"] != target:
                assert time.monotonic() < deadline, f"the service did not follow the pointer to {target}"
                time.sleep(0.05)
    finally:
        stop.set()
        for t in clients:
            t.join()
    assert not errors, errors[:3]
    assert len(answers) > 100
    assert {status for status, _, _ in answers} == {200}
    wrong = [(v, items) for _, v, items in answers if items != expected[v]]
    assert not wrong, f"{len(wrong)} answers named a version that did not score them: {wrong[:2]}"
    assert {v for _, v, _ in answers} == {first, second}
    metrics = s.request("GET", "/metrics")[1]
    assert 'freshrec_serve_reloads_total{outcome="loaded"} 11.0' in metrics


def test_a_tampered_version_is_refused_and_the_old_one_serves_on(serve, registry, tmp_path):
    first = registry.pointer()[0]["version"]
    key = f"{registry.prefix}/champion.json"
    good = registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
    bad = "2099-01-02-badc0ffe"
    second_version(registry, tmp_path, bad)
    registry.set_champion(bad, "tester", "promoted, then altered in the store")
    moved = registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=good)  # the service starts on the first
    s = serve()
    # the file is altered before the service can see the move (else it may load the good bytes first)
    registry.s3.put_object(Bucket=registry.bucket, Key=registry.version_key(bad, json.loads(moved)["serve_file"]),
                           Body=b"not a model")  # fmt: skip
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=moved)
    _refused_while_the_old_one_serves(s, first, bad, "fails verification")
    assert s.request("GET", "/readyz")[0] == 200  # the old model is verified and the pointer is read
    assert f"refused version {bad}" in s.log.read_text()
    time.sleep(1)  # polls go on: the refused version is not downloaded again and again
    assert 'freshrec_serve_reloads_total{outcome="refused"} 1.0' in s.request("GET", "/metrics")[1]


def test_a_version_that_fails_its_warm_up_is_refused_and_the_old_one_serves_on(serve, registry, tmp_path):
    """A version whose files are all as its manifest says, but which cannot answer a real request right: its
    catalogue (items.json) has 3 items while its graph scores the champion's whole catalogue, so the warm-up
    request gets indices outside it. It is refused before it serves anything; the old model serves on."""
    first = registry.pointer()[0]["version"]
    cold = second_version(registry, tmp_path, "2099-01-03-c01dfeed", catalogue=lambda items: items[:3])
    s = serve()
    registry.set_champion(cold, "tester", "verified files, a graph that does not fit its catalogue")
    _refused_while_the_old_one_serves(s, first, cold, "outside the catalogue")


def _refused_while_the_old_one_serves(s, first: str, refused: str, why: str) -> None:
    """Once the service has tried the pointer's `refused`: it says why, and `first` answers on."""
    deadline = time.monotonic() + 15
    while not s.request("GET", "/version")[1]["refused"]:
        assert time.monotonic() < deadline, f"{refused} was never tried"
        time.sleep(0.1)
    version = s.request("GET", "/version")[1]
    assert version["version"] == first and version["pointer_version"] == refused
    assert why in version["refused"][0]["reason"], version["refused"]
    status, body = s.request("POST", "/recommend", {"history": HISTORY})
    assert status == 200 and body["version"] == first
    assert 'freshrec_serve_reloads_total{outcome="refused"} 1.0' in s.request("GET", "/metrics")[1]


def test_readiness_follows_the_pointer_read(serve, registry):
    s = serve()  # polls every 0.2 s: not ready after 3 polls without a successful read
    key = f"{registry.prefix}/champion.json"
    good = registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=b"{not json")
    deadline = time.monotonic() + 10
    while s.request("GET", "/readyz")[0] == 200:
        assert time.monotonic() < deadline, "still ready although the pointer cannot be read"
        time.sleep(0.1)
    status, body = s.request("GET", "/readyz")
    assert status == 503 and "pointer" in body["reason"]
    assert s.request("POST", "/recommend", {"history": HISTORY})[0] == 200  # serving goes on meanwhile
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=good)
    deadline = time.monotonic() + 10
    while s.request("GET", "/readyz")[0] != 200:
        assert time.monotonic() < deadline, "not ready again after the pointer came back"
        time.sleep(0.1)


def test_not_ready_until_a_champion_exists(serve, registry):
    registry.s3.delete_object(Bucket=registry.bucket, Key=f"{registry.prefix}/champion.json")
    s = serve(ready=False)
    time.sleep(2)
    status, body = s.request("GET", "/readyz")
    assert status == 503 and "no champion" in body["reason"]
    assert s.request("GET", "/healthz")[0] == 200
    status, body = s.request("POST", "/recommend", {"history": HISTORY})
    assert status == 503 and "no champion" in body["error"]


def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(serve):
    s = serve()
    body = json.dumps({"history": HISTORY}).encode()
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])  # fmt: skip
        time.sleep(0.3)  # the request is in flight: headers read, body coming
        os.killpg(s.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while True:  # new connections are refused once the listener closes
            try:
                socket.create_connection(("127.0.0.1", s.port), timeout=1).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        assert s.proc.poll() is None  # still draining
        sock.sendall(body[10:])
        answer = b""
        while chunk := sock.recv(65536):  # headers and body may come in two segments; the server then closes
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b'"version"' in answer
    assert s.proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
    assert "Finished server process" in s.log.read_text()
