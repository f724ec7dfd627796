"""``RemoteDecider``: the node-side decision asked of a nodecert service over HTTP (issue 12).

Against the real service (uvicorn on loopback) with its shared secret, and against local
servers that stall, redirect or answer nonsense: every failure denies.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from nodecert.bootstrap import build_service
from nodecert.core.config import Settings
from nodecert.core.values import RevocationReason
from nodecert.http.app import create_app
from nodecert.nodeside.access import DenyReason
from nodecert.verify import RemoteDecider
from tests.kit import ADMIN, LiveServer, issue

SECRET = "remote-decider-shared-secret"


@pytest.fixture
def service(tmp_path):
    return build_service(Settings(home=tmp_path / "home", authorize_secret=SECRET))


@pytest.fixture
def live(service):
    with LiveServer(create_app(service)) as server:
        yield server


def test_allows_the_right_node_and_says_who(service, live):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    decision = RemoteDecider(live.url, secret=SECRET).decide(cert.pem, "n1")
    assert decision.allowed
    assert (decision.identity.user_id, decision.identity.node_id) == ("alice", "n1")
    assert decision.serial == cert.serial


def test_denials_carry_the_services_reason(service, live):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    decider = RemoteDecider(live.url, secret=SECRET)
    wrong = decider.decide(cert.pem, "n2")
    # The service's decision, read back with the wire-error table: reason and detail.
    assert wrong.reason is DenyReason.WRONG_NODE and not wrong.allowed
    assert wrong.detail == service.decider.decide(cert.pem, "n2").detail
    service.administration.revoke(ADMIN, cert.serial, RevocationReason.KEY_COMPROMISE)
    assert decider.decide(cert.pem, "n1").reason is DenyReason.REVOKED
    assert decider.decide("not a certificate", "n1").reason is DenyReason.MALFORMED_CERTIFICATE


def test_a_wrong_or_missing_secret_denies(service, live):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    for secret in ("wrong-secret-wrong-secret", None):
        decision = RemoteDecider(live.url, secret=secret).decide(cert.pem, "n1")
        assert not decision.allowed
        assert decision.reason is DenyReason.STORE_UNAVAILABLE


def test_no_cache_by_default_so_a_revocation_denies_at_once(service, live):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    decider = RemoteDecider(live.url, secret=SECRET)
    assert decider.decide(cert.pem, "n1").allowed
    service.administration.revoke(ADMIN, cert.serial, RevocationReason.KEY_COMPROMISE)
    assert not decider.decide(cert.pem, "n1").allowed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_optional_cache_is_per_certificate_and_node_and_expires(service, live):
    alice = issue(service.authority, "alice", "n1", admin=service.administration)
    bob = issue(service.authority, "bob", "n9", admin=service.administration)
    clock = Clock()
    decider = RemoteDecider(live.url, secret=SECRET, cache_ttl_s=5, clock=clock)
    assert decider.decide(alice.pem, "n1").allowed
    service.administration.revoke(ADMIN, alice.serial, RevocationReason.KEY_COMPROMISE)
    assert decider.decide(alice.pem, "n1").allowed  # Cached, as configured.
    # Never reused for another node or another certificate.
    assert decider.decide(alice.pem, "n9").reason is DenyReason.WRONG_NODE
    assert decider.decide(bob.pem, "n1").reason is DenyReason.WRONG_NODE
    clock.now += 5
    assert decider.decide(alice.pem, "n1").reason is DenyReason.REVOKED
    # Denials are not cached: bob's allow right after his deny.
    assert decider.decide(bob.pem, "n9").allowed


def test_the_cache_ttl_is_bounded():
    with pytest.raises(ValueError, match="cache_ttl_s"):
        RemoteDecider("http://127.0.0.1:1", secret=None, cache_ttl_s=3600)
    with pytest.raises(ValueError, match="http"):
        RemoteDecider("file:///etc/passwd", secret=None)


@pytest.mark.parametrize(
    "url", ["http://nodecert.internal:8080", "http://10.0.0.5", "http://[2001:db8::1]:80"]
)
def test_the_secret_never_goes_over_plain_http_to_another_host(url):
    # The docs say https unless on loopback; plain http would show the secret to the path.
    with pytest.raises(ValueError, match="https"):
        RemoteDecider(url, secret="a-long-enough-shared-secret")
    RemoteDecider(url.replace("http://", "https://"), secret="a-long-enough-shared-secret")
    RemoteDecider(url, secret=None)  # Nothing to show; the service refuses it anyway.
    for loopback in (
        "http://127.0.0.1:8080",
        "http://127.1.2.3",
        "http://[::1]:1",
        "http://localhost:8",
    ):
        RemoteDecider(loopback, secret="a-long-enough-shared-secret")


class _Stalling(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        time.sleep(5)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Redirecting(http.server.BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_POST(self) -> None:
        _Redirecting.seen.append(self.headers.get("X-Nodecert-Authorize-Secret"))
        self.send_response(307)
        self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/x")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Nonsense(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = b'{"allowed": true, "userId": "alice", "nodeId": "n2", "serial": "01"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_stalling_service_denies_within_the_timeout(service):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    server = _serve(_Stalling)
    try:
        started = time.monotonic()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        decision = RemoteDecider(url, secret=SECRET, timeout_s=0.5).decide(cert.pem, "n1")
        assert decision.reason is DenyReason.STORE_UNAVAILABLE
        assert time.monotonic() - started < 4  # The server stalls 5 s; generous bound.
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_service_denies(service):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # Bound, never listening: connection refused.
        decision = RemoteDecider(f"http://127.0.0.1:{port}", secret=SECRET).decide(cert.pem, "n1")
    assert decision.reason is DenyReason.STORE_UNAVAILABLE


def test_redirects_are_not_followed(service):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    server = _serve(_Redirecting)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        decision = RemoteDecider(url, secret=SECRET).decide(cert.pem, "n1")
        assert decision.reason is DenyReason.STORE_UNAVAILABLE
        assert _Redirecting.seen == [SECRET]  # Sent once, to the configured service only.
    finally:
        server.shutdown()
        server.server_close()


def test_an_allow_for_another_node_is_not_believed(service):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    server = _serve(_Nonsense)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        decision = RemoteDecider(url, secret=SECRET).decide(cert.pem, "n1")
        assert not decision.allowed
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_with_a_password_is_refused_without_echoing_it():
    with pytest.raises(ValueError, match="user name or password") as caught:
        RemoteDecider("https://ops:hunter2-secret@nodecert.example", secret="x" * 16)
    assert "hunter2" not in str(caught.value)
