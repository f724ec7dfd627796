"""``/v1/authorize`` without a secret trusts a direct loopback peer only (issue 12).

uvicorn rewrites the peer address from ``X-Forwarded-For`` when its proxy headers are on
and the sender is in ``--forwarded-allow-ips``. With ``'*'`` anyone can then claim to be
127.0.0.1: the loopback trust must not follow that header.
"""

import http.client
import socket
import urllib.parse

import pytest

from nodecert.bootstrap import build_service
from nodecert.core.config import Settings
from nodecert.http.app import create_app
from tests.kit import LiveServer, issue


def _non_loopback_address():
    # The address this machine would use to reach the outside; no packet is sent.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _post(host, port, headers):
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("POST", "/v1/authorize", headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def forwarding_server(tmp_path):
    service = build_service(Settings(home=tmp_path / "home"))
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    app = create_app(service)
    with LiveServer(app, host="0.0.0.0", proxy_headers=True, forwarded_allow_ips="*") as live:
        yield live.port, cert


def test_a_forwarded_loopback_address_from_a_remote_peer_is_not_trusted(forwarding_server):
    port, cert = forwarding_server
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    headers = {
        "X-Client-Cert": urllib.parse.quote(cert.pem),
        "X-Nodecert-Node": "n1",
        "X-Forwarded-For": "127.0.0.1",
    }
    status, body = _post(address, port, headers)
    assert status == 403, body
    assert b"forwarded-address header" in body
    # The same request without the header, from that address: refused as non-loopback.
    del headers["X-Forwarded-For"]
    assert _post(address, port, headers)[0] == 403


@pytest.mark.parametrize("name", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_any_forwarded_address_header_voids_loopback_trust(forwarding_server, name):
    port, cert = forwarding_server
    headers = {"X-Client-Cert": urllib.parse.quote(cert.pem), "X-Nodecert-Node": "n1"}
    assert _post("127.0.0.1", port, headers)[0] == 200
    status, body = _post("127.0.0.1", port, {**headers, name: "127.0.0.1"})
    assert status == 403, body


def _post_raw(port, headers):
    # http.client sends repeated headers as given (a dict could not).
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("POST", "/v1/authorize")
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", "0")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def loopback_server(tmp_path):
    service = build_service(Settings(home=tmp_path / "home"))
    alice = issue(service.authority, "alice", "n1", admin=service.administration)
    bob = issue(service.authority, "bob", "n9", admin=service.administration)
    with LiveServer(create_app(service)) as live:
        yield live.port, alice, bob


@pytest.mark.parametrize("repeated", ["X-Client-Cert", "X-Nodecert-Node"])
def test_a_repeated_proxy_header_is_refused_not_resolved(loopback_server, repeated):
    # A proxy that appends its header instead of replacing the client's would otherwise
    # let the client's copy (the first) speak: bob's certificate for n9, asking for n9,
    # while the proxy established alice's certificate for n1.
    port, alice, bob = loopback_server
    client = {"X-Client-Cert": urllib.parse.quote(bob.pem), "X-Nodecert-Node": "n9"}
    proxy = {"X-Client-Cert": urllib.parse.quote(alice.pem), "X-Nodecert-Node": "n1"}
    headers = [(repeated, client[repeated]), *proxy.items()]
    status, body = _post_raw(port, headers)
    assert status == 400, body
    assert b'"code":"conflicting_input"' in body
    assert f"{repeated}: sent more than once".encode() in body
    # Each alone is answered as usual.
    assert _post_raw(port, list(proxy.items()))[0] == 200


def test_a_repeated_secret_counts_as_none(tmp_path):
    secret = "a-long-enough-shared-secret"
    service = build_service(Settings(home=tmp_path / "home", authorize_secret=secret))
    alice = issue(service.authority, "alice", "n1", admin=service.administration)
    proxy = [("X-Client-Cert", urllib.parse.quote(alice.pem)), ("X-Nodecert-Node", "n1")]
    with LiveServer(create_app(service)) as live:
        name = "X-Nodecert-Authorize-Secret"
        assert _post_raw(live.port, [*proxy, (name, secret)])[0] == 200
        status, body = _post_raw(live.port, [*proxy, (name, "guess"), (name, secret)])
        assert status == 401, body
        assert secret.encode() not in body
