"""Two ``nodecert serve`` processes, one PostgreSQL cluster, one CA: several servers for real.

What docs/configuration.md promises for ``NODECERT_STORE=postgres`` behind a load balancer,
tried with real processes on two ports: issuance through both, one per-user quota across
both, a revocation through one denied at once by ``/v1/authorize`` on the other, and one
server killed (``kill -9``) while the other keeps serving.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import cli, free_port, nodecert_env, start_server, stop_server

pytestmark = pytest.mark.postgres


def _call(
    port: int, method: str, path: str, *, token: str | None = None, body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _issue(port: int, token: str, node: str) -> tuple[int, dict[str, object]]:
    status, _, body = _call(
        port, "POST", "/generate-cert", token=token, body={"nodeId": node, "keyType": "ec-p256"}
    )
    return status, json.loads(body)


def _authorize(port: int, certificate: str, node: str) -> tuple[int, dict[str, str]]:
    status, headers, _ = _call(
        port,
        "POST",
        "/v1/authorize",
        headers={"X-Client-Cert": urllib.parse.quote(certificate), "X-Nodecert-Node": node},
    )
    return status, {k.lower(): v for k, v in headers.items()}


@pytest.fixture
def two_servers(
    tmp_path: Path, postgres_dsn: str
) -> Iterator[tuple[dict[str, str], list[subprocess.Popen[bytes]], list[int]]]:
    # One home: both servers hold the same CA (as real servers share their CA's files or
    # ACM PCA); the rows, the node directory and the rate buckets live only in PostgreSQL.
    ports = [free_port(), free_port()]
    base = nodecert_env(
        tmp_path / "home",
        store="postgres",
        database_url=postgres_dsn,
        quota_per_minute="3",
        quota_burst="3",
        key_pool_size="0",
    )
    cli(base, "init")
    servers = []
    try:
        for index, port in enumerate(ports):
            env = {**base, "NODECERT_PORT": str(port)}
            servers.append(start_server(env, tmp_path / f"serve-{index}.log"))
        yield base, servers, ports
    finally:
        for server in servers:
            if server.poll() is None:
                stop_server(server)


def test_two_servers_share_rows_quota_and_revocation(two_servers) -> None:
    env, servers, (a, b) = two_servers
    admin = cli(env, "dev-token", "ops", "--admin")
    alice, bob = cli(env, "dev-token", "alice"), cli(env, "dev-token", "bob")
    for node, owner, port in (("n1", "alice", a), ("n2", "bob", b)):
        status, _, body = _call(
            port, "PUT", f"/v1/nodes/{node}", token=admin, body={"owner": owner}
        )
        assert status in (200, 201), body

    # Issuance through both; each server lists what the other issued.
    status, first = _issue(a, alice, "n1")
    assert status == 201, first
    status, second = _issue(b, alice, "n1")
    assert status == 201, second
    _, _, listed = _call(a, "GET", "/v1/certificates?nodeId=n1", token=alice)
    assert {c["serialNumber"] for c in json.loads(listed)["certificates"]} == {
        first["serialNumber"],
        second["serialNumber"],
    }

    # One quota (3 a minute, burst 3) for alice, whichever server answers.
    status, _ = _issue(a, alice, "n1")
    assert status == 201
    status, _, body = _call(
        b, "POST", "/generate-cert", token=alice, body={"nodeId": "n1", "keyType": "ec-p256"}
    )
    assert status == 429, body
    assert json.loads(body)["code"] == "quota_exceeded"

    # A revocation through one server is a deny on the other at the next decision.
    certificate = str(first["certificate"])
    assert _authorize(b, certificate, "n1")[0] == 200
    status, _, body = _call(
        a, "POST", f"/v1/certificates/{first['serialNumber']}/revoke", token=alice, body={}
    )
    assert status == 200, body
    status, headers = _authorize(b, certificate, "n1")
    assert (status, headers.get("x-nodecert-reason")) == (403, "revoked")
    assert _authorize(a, str(second["certificate"]), "n1")[0] == 200

    # One server killed outright: the other keeps issuing, listing and deciding.
    os.killpg(servers[0].pid, signal.SIGKILL)
    servers[0].wait(timeout=20)
    status, issued = _issue(b, bob, "n2")
    assert status == 201, issued
    assert _authorize(b, str(issued["certificate"]), "n2")[0] == 200
    assert _authorize(b, certificate, "n1")[0] == 403
