"""``nodecert.verify``: the ASGI middleware for a node's own app."""

import asyncio
import json
import urllib.parse

import pytest

from nodecert.testing import MemoryStore
from nodecert.verify import NodeAccessMiddleware, client_certificate_from_scope
from tests.kit import authority, decider, issue, new_ca


@pytest.fixture
def setup(tmp_path):
    ca = new_ca(tmp_path / "ca")
    store = MemoryStore()
    return ca, store, authority(ca, store)


async def _app(scope, receive, send):
    decision = scope["nodecert.decision"]
    body = f"hello {decision.identity.user_id}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def call(app, scope):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "headers": [], **scope}, receive, send))
    return sent[0]["status"], sent[1]["body"] if len(sent) > 1 else b""


def tls_scope(pem):
    return {"extensions": {"tls": {"client_cert_chain": [pem]}}, "client": ("10.0.0.5", 1)}


def test_the_tls_extension_certificate_is_checked(setup):
    ca, store, auth = setup
    cert = issue(auth, "alice", "n1")
    app = NodeAccessMiddleware(_app, decider=decider(ca, store), node_id="n1")
    assert call(app, tls_scope(cert.pem)) == (200, b"hello alice")
    status, body = call(
        NodeAccessMiddleware(_app, decider=decider(ca, store), node_id="n2"), tls_scope(cert.pem)
    )
    assert status == 403
    # The reason alone, never the decision's detail; the same document the service sends.
    assert json.loads(body) == {
        "type": "https://nodecert.dev/problems/access_denied",
        "title": "Access denied",
        "status": 403,
        "detail": "certificate: wrong_node",
        "code": "access_denied",
        "reason": "wrong_node",
    }


def test_the_proxy_header_counts_only_from_a_trusted_proxy(setup):
    ca, store, auth = setup
    cert = issue(auth, "alice", "n1")
    header = [(b"x-client-cert", urllib.parse.quote(cert.pem).encode())]
    app = NodeAccessMiddleware(
        _app, decider=decider(ca, store), node_id="n1", trusted_proxies={"127.0.0.1"}
    )
    assert call(app, {"headers": header, "client": ("127.0.0.1", 5)})[0] == 200
    status, body = call(app, {"headers": header, "client": ("203.0.113.9", 5)})
    assert status == 403
    assert json.loads(body)["reason"] == "no_certificate"


def test_target_from_the_scope(setup):
    ca, store, auth = setup
    cert = issue(auth, "alice", "n1")

    def node_of(scope):
        parts = scope.get("path", "").split("/")
        return parts[2] if len(parts) > 2 and parts[1] == "nodes" else None

    app = NodeAccessMiddleware(_app, decider=decider(ca, store), node_id=node_of)
    assert call(app, {**tls_scope(cert.pem), "path": "/nodes/n1/x"})[0] == 200
    assert call(app, {**tls_scope(cert.pem), "path": "/other"})[0] == 403


def test_lifespan_passes_through_and_websockets_are_closed(setup):
    ca, store, _ = setup
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])

    app = NodeAccessMiddleware(inner, decider=decider(ca, store), node_id="n1")
    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, None, send))
    asyncio.run(app({"type": "websocket", "headers": []}, None, send))
    assert seen == ["lifespan"]
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_client_certificate_from_scope_prefers_tls():
    scope = {**tls_scope("PEM"), "headers": [(b"x-client-cert", b"OTHER")]}
    assert client_certificate_from_scope(scope, trusted_proxies={"10.0.0.5"}) == "PEM"
    assert client_certificate_from_scope({"headers": []}) is None


def test_a_repeated_proxy_header_is_denied_not_resolved(setup):
    # A certificate is public: bob can copy alice's into his own X-Client-Cert. A proxy
    # that appends the one it verified (bob's) instead of replacing the client's copy
    # must not let the first (alice's) speak.
    ca, store, auth = setup
    alice, bob = issue(auth, "alice", "n1"), issue(auth, "bob", "n9")
    headers = [
        (b"x-client-cert", urllib.parse.quote(alice.pem).encode()),
        (b"X-Client-Cert", urllib.parse.quote(bob.pem).encode()),
    ]
    app = NodeAccessMiddleware(
        _app, decider=decider(ca, store), node_id="n1", trusted_proxies={"127.0.0.1"}
    )
    status, body = call(app, {"headers": headers, "client": ("127.0.0.1", 5)})
    assert status == 403
    assert json.loads(body)["reason"] == "malformed_certificate"
    assert call(app, {"headers": headers[:1], "client": ("127.0.0.1", 5)})[0] == 200
