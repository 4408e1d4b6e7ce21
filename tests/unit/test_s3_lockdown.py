"""The embedded S3 exposes only its authenticated S3 endpoint: the filer and volume HTTP ports refuse
unsigned reads and writes (no way around the S3 credentials to rewrite champion.json), the master's admin
HTTP refuses everyone (no file ids handed out, no volumes grown by a stranger), its secrets are 0600 from
the first byte, and instances never share a port."""

from __future__ import annotations

import http.client
import socket
import stat

import pytest

from tasks.s3 import PORT_BLOCK, LocalS3


def _status(method: str, port: int, path: str, body: bytes | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, body=body)
    return conn.getresponse().status


def test_only_the_s3_endpoint_is_usable(s3_server, s3_env, registry):
    registry.s3.put_object(Bucket=s3_env, Key="models/seqrec/champion.json", Body=b'{"version": "good"}')
    ports = s3_server.ports()
    path = f"/buckets/{s3_env}/models/seqrec/champion.json"
    assert _status("GET", ports["filer.port"], path) == 401
    assert _status("PUT", ports["filer.port"], path, b'{"version": "evil"}') == 401
    for path in ("/dir/assign", "/vol/grow?count=1", "/dir/status"):
        assert _status("GET", ports["master.port"], path) == 401, path
    body = registry.s3.get_object(Bucket=s3_env, Key="models/seqrec/champion.json")["Body"].read()
    assert body == b'{"version": "good"}'


def test_secrets_are_owner_only(s3_server):
    for name in ("credentials.json", "identities.json", "security.toml"):
        mode = stat.S_IMODE((s3_server.state_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"


def test_instances_never_collide(s3_server, tmp_path):
    """weed's default gRPC port is HTTP + 10000: an instance on S3 port P + 10000 used to collide with P's."""
    ports = list(s3_server.ports().values())
    assert sorted(ports) == list(range(s3_server.port, s3_server.port + PORT_BLOCK))
    other = s3_server.port + 10_000
    for p in range(other, other + PORT_BLOCK):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) == 0:
                pytest.skip(f"port {p} is taken on this machine")
    second = LocalS3(tmp_path / "s3b", other).start()
    try:
        assert second.running() and s3_server.running()
    finally:
        second.stop()
