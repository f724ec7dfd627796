"""A proxy's certificate header counts only from a proxy that proved itself.

``NodeAccessMiddleware`` believes ``X-Client-Cert`` from a peer on its Unix socket, from a
trusted address, and/or with the shared secret in ``X-Nodecert-Proxy-Secret``; the service
logs once when a caller sends an authorize secret it does not check. The recipe run as
written (nginx, uvicorn ``--uds``) is in tests/integration/test_node_app_recipe.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.http.app import create_app
from nodecert.testing import MemoryStore
from nodecert.verify import UNIX_SOCKET, NodeAccessMiddleware, client_certificate_from_scope
from tests.kit import authority, decider, issue, new_ca

SECRET = "proxy-secret-0123456789abcdef"
UDS = {"server": ("/run/nodecert-n1/app.sock", None), "client": None}
TCP = {"server": ("127.0.0.1", 9000), "client": ("127.0.0.1", 40000)}


@pytest.fixture(scope="module")
def world():
    store = MemoryStore()
    ca = new_ca()
    auth = authority(ca, store)
    return issue(auth, "alice", "n1"), decider(ca, store)


async def _app(scope, receive, send):
    body = json.dumps(
        {
            "user": scope["nodecert.decision"].identity.user_id,
            "headers": sorted(name.decode() for name, _ in scope["headers"]),
        }
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def call(app, scope: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    raw = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
    asyncio.run(app({"type": "http", "headers": raw, **scope}, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


def cert_header(pem: str) -> dict[str, str]:
    return {"X-Client-Cert": urllib.parse.quote(pem)}


def test_a_peer_on_the_unix_socket_is_the_proxy_and_a_tcp_one_is_not(world):
    alice, decide = world
    app = NodeAccessMiddleware(_app, decider=decide, node_id="n1", trusted_proxies={UNIX_SOCKET})
    assert call(app, UDS, cert_header(alice.pem))[0] == 200
    for scope in (TCP, {"client": None}, {"server": ("/x.sock", 0), "client": None}, {}):
        status, body = call(app, scope, cert_header(alice.pem))
        assert (status, body["reason"]) == (403, "no_certificate"), scope
    # A socket peer that also claims an address is not a socket peer.
    status, _ = call(app, {**UDS, "client": ("127.0.0.1", 1)}, cert_header(alice.pem))
    assert status == 403


def test_with_a_secret_the_header_counts_only_with_it(world, caplog):
    alice, decide = world
    app = NodeAccessMiddleware(_app, decider=decide, node_id="n1", proxy_secret=SECRET)
    good = {**cert_header(alice.pem), "X-Nodecert-Proxy-Secret": SECRET}
    status, body = call(app, TCP, good)
    assert status == 200
    # The app behind never sees the secret.
    assert body["headers"] == ["x-client-cert"]
    for secret in ("", SECRET[:-1], SECRET + "x", SECRET.upper(), f"{SECRET}, {SECRET}"):
        status, body = call(app, TCP, {**cert_header(alice.pem), "X-Nodecert-Proxy-Secret": secret})
        assert (status, body["reason"]) == (403, "no_certificate")
    assert call(app, TCP, cert_header(alice.pem))[0] == 403
    assert SECRET not in caplog.text and SECRET not in repr(app)


def test_a_repeated_secret_proves_nothing(world):
    alice, decide = world
    app = NodeAccessMiddleware(_app, decider=decide, node_id="n1", proxy_secret=SECRET)
    scope = {
        **TCP,
        "headers": [
            (b"x-client-cert", urllib.parse.quote(alice.pem).encode()),
            (b"x-nodecert-proxy-secret", b"wrong-wrong-wrong-wrong"),
            (b"X-Nodecert-Proxy-Secret", SECRET.encode()),
        ],
    }
    sent: list[dict[str, Any]] = []

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", **scope}, None, send))
    assert sent[0]["status"] == 403


def test_socket_and_secret_together_need_both(world):
    alice, decide = world
    app = NodeAccessMiddleware(
        _app, decider=decide, node_id="n1", trusted_proxies={UNIX_SOCKET}, proxy_secret=SECRET
    )
    good = {**cert_header(alice.pem), "X-Nodecert-Proxy-Secret": SECRET}
    assert call(app, UDS, good)[0] == 200
    assert call(app, TCP, good)[0] == 403
    assert call(app, UDS, cert_header(alice.pem))[0] == 403


def test_the_tls_extension_needs_no_proxy_proof(world):
    alice, decide = world
    app = NodeAccessMiddleware(_app, decider=decide, node_id="n1", proxy_secret=SECRET)
    scope = {**TCP, "extensions": {"tls": {"client_cert_chain": [alice.pem]}}}
    assert call(app, scope, {})[0] == 200


@pytest.mark.parametrize("secret", ["short", "x" * 15, "with space in it 123", "ünïcödé-ünïcödé-x"])
def test_a_weak_or_unsendable_secret_is_refused_without_echoing_it(world, secret):
    _, decide = world
    with pytest.raises(ValueError, match="proxy_secret") as raised:
        NodeAccessMiddleware(_app, decider=decide, node_id="n1", proxy_secret=secret)
    assert secret not in str(raised.value)


@pytest.mark.parametrize("secret", ["", "short", "nön-ascii-sécret-value"])
def test_the_function_refuses_a_weak_secret_too(secret):
    # An empty secret would be "proven" by an empty header from anyone.
    scope = {"headers": [(b"x-client-cert", b"PEM"), (b"x-nodecert-proxy-secret", b"")]}
    with pytest.raises(ValueError, match="proxy_secret"):
        client_certificate_from_scope(scope, proxy_secret=secret)


def test_an_unchecked_secret_is_dropped_and_warned_about_once(world, caplog):
    alice, decide = world
    app = NodeAccessMiddleware(_app, decider=decide, node_id="n1", trusted_proxies={UNIX_SOCKET})
    headers = {**cert_header(alice.pem), "X-Nodecert-Proxy-Secret": SECRET}
    with caplog.at_level(logging.WARNING, logger="nodecert"):
        for _ in range(3):
            status, body = call(app, UDS, headers)
            assert status == 200 and body["headers"] == ["x-client-cert"]
    warnings = [r for r in caplog.records if "proxy_secret" in r.getMessage()]
    assert len(warnings) == 1
    assert SECRET not in caplog.text


HEADER_VALUES = st.one_of(st.just(SECRET), st.text(max_size=40), st.binary(max_size=40))


@settings(max_examples=200, deadline=None)
@given(
    secrets=st.lists(HEADER_VALUES, max_size=3),
    names=st.lists(st.sampled_from([b"x-nodecert-proxy-secret", b"X-NODECERT-PROXY-SECRET"])),
    scope=st.sampled_from([UDS, TCP, {}, {"client": ("10.0.0.1", 1)}]),
)
def test_only_one_right_secret_makes_the_header_count(world, secrets, names, scope):
    alice, decide = world
    app = NodeAccessMiddleware(_app, decider=decide, node_id="n1", proxy_secret=SECRET)
    raw = [(b"x-client-cert", urllib.parse.quote(alice.pem).encode())]
    for index, value in enumerate(secrets):
        name = names[index % len(names)] if names else b"x-nodecert-proxy-secret"
        raw.append((name, value if isinstance(value, bytes) else value.encode()))
    sent: list[dict[str, Any]] = []

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "headers": raw, **scope}, None, send))
    proven = len(secrets) == 1 and secrets[0] in (SECRET, SECRET.encode())
    assert sent[0]["status"] == (200 if proven else 403)


# -- The service: POST /v1/authorize --------------------------------------------------------


def test_the_service_warns_once_when_a_secret_arrives_and_none_is_configured(make_service, caplog):
    service = make_service()
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    client = TestClient(create_app(service), client=("127.0.0.1", 40000))
    headers = {
        "X-Client-Cert": urllib.parse.quote(cert.pem),
        "X-Nodecert-Node": "n1",
        "X-Nodecert-Authorize-Secret": SECRET,
    }
    with caplog.at_level(logging.INFO, logger="nodecert"):
        for _ in range(3):
            assert client.post("/v1/authorize", headers=headers).status_code == 200
        # A repeated one (which counts as none) is brought all the same: no second line.
        repeated = [(k, v) for k, v in headers.items()] + [("X-Nodecert-Authorize-Secret", "x")]
        assert client.post("/v1/authorize", headers=repeated).status_code == 200
        # Without a secret: nothing to warn about.
        plain = {k: v for k, v in headers.items() if "Secret" not in k}
        assert client.post("/v1/authorize", headers=plain).status_code == 200
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "NODECERT_AUTHORIZE_SECRET" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert SECRET not in caplog.text


def test_a_repeated_secret_alone_is_warned_about(make_service, caplog):
    service = make_service()
    client = TestClient(create_app(service), client=("127.0.0.1", 40000))
    twice = [("X-Nodecert-Authorize-Secret", SECRET), ("X-Nodecert-Authorize-Secret", SECRET)]
    with caplog.at_level(logging.WARNING, logger="nodecert"):
        assert client.post("/v1/authorize", headers=twice).status_code == 403  # no certificate
    assert "NODECERT_AUTHORIZE_SECRET is not set" in caplog.text
    assert SECRET not in caplog.text


def test_the_service_with_a_secret_does_not_warn(make_service, caplog):
    service = make_service(authorize_secret=SECRET)
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    client = TestClient(create_app(service), client=("203.0.113.9", 40000))
    headers = {
        "X-Client-Cert": urllib.parse.quote(cert.pem),
        "X-Nodecert-Node": "n1",
        "X-Nodecert-Authorize-Secret": SECRET,
    }
    with caplog.at_level(logging.WARNING, logger="nodecert"):
        assert client.post("/v1/authorize", headers=headers).status_code == 200
    assert "NODECERT_AUTHORIZE_SECRET" not in caplog.text
