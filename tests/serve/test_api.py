"""The HTTP contract of `python -m serve` (serve/app.py) on a real service: what it answers, and a JSON 4xx
that says what is wrong for every kind of bad request, on a connection that stays usable."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_importing_the_service_loads_no_training_stack():
    code = (
        "import sys, serve.app, serve.server, serve.champion, serve.model, serve.__main__\n"
        "import tasks.registry, tasks.s3, tasks.params  # what create_app loads when it builds its follower\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'pandas', 'pyarrow', 'airflow', 'models.seqrec')"
        " if m in sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_recommend_answers_the_contract(serve):
    s = serve("--max-history", "500")
    status, version = s.request("GET", "/version")
    assert status == 200 and version["version"] and version["manifest_sha256"] and version["serve_file"]
    window, top_k = version["window"], version["top_k"]
    _, batch = s.request("POST", "/recommend/batch", {"users": [{"history": []}]})
    catalogue_sample = [r["item"] for r in batch["results"][0]["items"]]

    status, body = s.request("POST", "/recommend", {"history": ["no-such-item", 7, "1"], "k": 5})
    assert status == 200, body
    assert body["version"] == version["version"]
    assert body["unknown"] == 1 and body["truncated"] == 0
    assert len(body["items"]) == 5 and not {"7", "1"} & {r["item"] for r in body["items"]}
    assert [r["score"] for r in body["items"]] == sorted((r["score"] for r in body["items"]), reverse=True)

    # a history longer than the window: the model reads the newest `window` ids, and with exclude_seen (the
    # graph's default here) nothing of the whole history comes back, not only the window's
    long = [str(i) for i in range(1, 400)]
    status, body = s.request("POST", "/recommend", {"history": long, "k": top_k})
    assert status == 200 and body["truncated"] > 0 and body["unknown"] + body["truncated"] + window >= len(long)
    assert not set(long) & {r["item"] for r in body["items"]}
    seen = catalogue_sample[:3]  # items the empty history would get, now seen far outside the window
    status, body = s.request("POST", "/recommend", {"history": seen + [str(i) for i in range(1, 300)]})
    assert status == 200 and not set(seen) & {r["item"] for r in body["items"]}

    # a batch answers what each user alone gets, in one call
    users = [{"history": ["1", "2"], "k": 3}, {"history": [50], "k": 10}, {"history": []}]
    status, body = s.request("POST", "/recommend/batch", {"users": users})
    assert status == 200
    singles = [s.request("POST", "/recommend", u)[1] for u in users]
    if version["serve_file"] == "model.onnx":  # fp32: the same numbers
        assert [r["items"] for r in body["results"]] == [single["items"] for single in singles]
    else:  # int8 quantizes activations per call (scale over the whole batch): the same items, near scores
        for got, alone in zip(body["results"], singles, strict=True):
            assert len(got["items"]) == len(alone["items"])
            for a, b in zip(got["items"], alone["items"], strict=True):
                assert a["score"] == pytest.approx(b["score"], rel=0.05)

    assert s.request("GET", "/healthz") == (200, {"status": "alive"})
    assert s.request("GET", "/readyz")[0] == 200
    metrics = s.request("GET", "/metrics")[1]
    for line in ('freshrec_serve_request_seconds_bucket{code="200",le="0.005",route="/recommend"}',
                 "freshrec_serve_in_flight_requests", 'freshrec_serve_model_info{serve_file=',
                 'freshrec_serve_reloads_total{outcome="loaded"} 1.0', "freshrec_serve_pointer_age_seconds",
                 "freshrec_serve_unknown_items_total"):  # fmt: skip
        assert line in metrics, line


DEEP = b'{"history": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
BAD = [  # (what, path, body, status)
    ("malformed JSON", "/recommend", b'{"history": [1,', 400),
    ("JSON nested 100,000 deep", "/recommend", DEEP, 400),
    ("not an object", "/recommend", b"[1, 2]", 422),
    ("an object in the history", "/recommend", {"history": [{"id": 1}]}, 422),
    ("a list in the history", "/recommend", {"history": [[1]]}, 422),
    ("a boolean id", "/recommend", {"history": [True]}, 422),
    ("a float id", "/recommend", {"history": [1.5]}, 422),
    ("an empty id", "/recommend", {"history": [""]}, 422),
    ("a string for the history", "/recommend", {"history": "1234"}, 422),
    ("no history", "/recommend", {"k": 3}, 422),
    ("an unknown field", "/recommend", {"history": [], "kk": 3}, 422),
    ("k zero", "/recommend", {"history": [], "k": 0}, 422),
    ("k as a string", "/recommend", {"history": [], "k": "5"}, 422),
    ("k above the model's top K", "/recommend", {"history": [], "k": 11}, 422),
    ("seen items wanted from a graph that leaves them out", "/recommend", {"history": [], "exclude_seen": False}, 422),
    ("a history over the limit", "/recommend", {"history": ["1"] * 501}, 422),
    ("an empty batch", "/recommend/batch", {"users": []}, 422),
    ("a batch over the limit", "/recommend/batch", {"users": [{"history": []}] * 9}, 422),
    ("a bad user in a batch", "/recommend/batch", {"users": [{"history": []}, {"history": [None]}]}, 422),
    ("an unknown route", "/recommend/all", {"history": []}, 404),
]


def test_every_bad_request_gets_a_4xx_that_names_the_problem(serve):
    s = serve("--max-history", "500", "--max-batch", "8", "--max-body", "300000")
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)  # one keep-alive connection for all
    for what, path, body, expected in BAD:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        assert resp.status == expected, (what, resp.status, answer)
        assert answer["error"], what
    # the connection survived all of them
    conn.request("POST", "/recommend", body=b'{"history": ["1"]}', headers={"Content-Type": "application/json"})
    assert conn.getresponse().status == 200

    assert s.request("GET", "/recommend")[0] == 405
    status, body = s.request("POST", "/recommend", b"history=1", {"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in body["error"]
    status, body = s.request("POST", "/recommend/batch", b"[" + b" " * 400_000 + b"]")
    assert status == 413 and "300000" in body["error"]
    log = s.log.read_text()
    assert "Traceback" not in log, log[-3000:]


def test_an_oversized_chunked_body_is_refused_before_it_ends(serve):
    """A chunked body has no length to check up front: the cap counts bytes as they come, and the answer
    is 413 as soon as they pass it, while the client has not finished (it may never)."""
    s = serve("--max-body", "100000")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        piece = b'"1",' * 250
        for _ in range(105):  # 105,000 bytes, and no final chunk: the body never ends
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_bearer_token(serve, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    token.chmod(0o600)
    s = serve("--token-file", str(token))
    assert s.request("POST", "/recommend", {"history": []})[0] == 401
    status, body = s.request("POST", "/recommend", {"history": []}, {"Authorization": "Bearer wrong"})
    assert status == 401 and "Bearer" in body["error"]
    assert s.request("POST", "/recommend", {"history": []}, {"Authorization": "Bearer s3cret-token"})[0] == 200
    assert s.request("GET", "/readyz")[0] == 200  # probes need no token
    assert "s3cret-token" not in s.log.read_text()

    token.chmod(0o644)
    loose = serve("--token-file", str(token), ready=False)
    assert loose.proc.wait(30) == 2
    assert f"chmod 600 {token}" in loose.log.read_text()

    env = serve(env={"FRESHREC_SERVE_TOKEN": "env-token-123"})  # the other source: the environment
    assert env.request("POST", "/recommend", {"history": []})[0] == 401
    assert env.request("POST", "/recommend", {"history": []}, {"Authorization": "Bearer env-token-123"})[0] == 200
    assert "env-token-123" not in env.log.read_text()


def test_a_scoring_failure_answers_500_and_the_service_answers_on(champion_bucket, tmp_path, monkeypatch, caplog):
    """The model call raising is a fault no real model produces on demand, so it is injected, in-process on
    the real app and champion: the client gets a JSON 500 that names the version, the error is logged once,
    and the next request is answered (Starlette's catch-all would log it twice and close the connection)."""
    import time

    from starlette.testclient import TestClient

    from serve.app import create_app
    from serve.config import ServeConfig
    from serve.model import Model

    app = create_app(ServeConfig(bucket=champion_bucket, poll=0.2, cache_dir=str(tmp_path / "cache")))
    with TestClient(app) as client:  # raises any exception the app lets out
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.1)
        version = client.get("/version").json()["version"]

        def boom(self, inputs):
            raise RuntimeError("onnxruntime: injected failure")

        with monkeypatch.context() as patch:
            patch.setattr(Model, "score", boom)
            for path, body in (("/recommend", {"history": ["1"]}), ("/recommend/batch", {"users": [{"history": []}]})):
                answer = client.post(path, json=body)
                assert answer.status_code == 500, answer.text
                assert answer.json()["error"] == f"scoring failed in version {version}: see the service log"
        assert client.post("/recommend", json={"history": ["1"]}).status_code == 200
    failures = [r for r in caplog.records if "failed" in r.getMessage() and r.exc_info]
    assert len(failures) == 2, [r.getMessage() for r in failures]  # one per failed request


def test_micro_batched_answers_are_each_users_own(serve):
    """With micro-batching on, concurrent requests share model calls, and each still gets its own answer
    (the one it gets alone), under the version that scored it."""
    from concurrent.futures import ThreadPoolExecutor

    plain, batched = serve("--batching", "off"), serve("--batch-wait-ms", "5")
    histories = [[str(i), str(i + 7), str(2 * i + 1)] for i in range(1, 41)]
    alone = [plain.request("POST", "/recommend", {"history": h})[1] for h in histories]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda h: batched.request("POST", "/recommend", {"history": h})[1], histories))
    fp32 = plain.request("GET", "/version")[1]["serve_file"] == "model.onnx"
    for a, b in zip(alone, together, strict=True):
        assert a["version"] == b["version"]
        if fp32:
            assert [r["item"] for r in a["items"]] == [r["item"] for r in b["items"]]
        else:  # int8 scales activations per call: near scores
            for x, y in zip(a["items"], b["items"], strict=True):
                assert x["score"] == pytest.approx(y["score"], rel=0.05)
