"""HTTP framing in a real `nodecert serve`, over raw sockets (issue 16).

- A ``Transfer-Encoding`` other than exactly ``chunked`` is refused (501, or 400 when llhttp
  refuses it first) and nothing is issued: llhttp read ``gzip, chunked`` as chunked and the
  application got the still-encoded body, the coding ignored.
- An HTTP/1.1 request without exactly one ``Host`` is a 400 (RFC 9112 section 3.2).
- The service never redirects: a trailing slash was a 307 whose ``Location`` was built from
  the client's ``Host`` (a redirect to a host the client chose, keeping method and body).
- A client that hangs up mid-body is one INFO line, not ``ERROR unexpected
  ClientDisconnect`` and a 60-line traceback.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import cli, free_port, nodecert_env, start_server, stop_server


@dataclass
class Served:
    port: int
    log: Path
    alice: str
    admin: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("framing")
    port = free_port()
    env = nodecert_env(home / "data", port, key_pool_size="0")
    server = start_server(env, home / "serve.log")
    try:
        served = Served(
            port,
            home / "serve.log",
            cli(env, "dev-token", "alice"),
            cli(env, "dev-token", "root", "--admin"),
        )
        answer = _raw(
            port,
            _request("PUT", "/v1/nodes/n1", served.admin, b'{"owner": "alice"}'),
        )
        assert answer.startswith(b"HTTP/1.1 200"), answer
        yield served
    finally:
        stop_server(server)


def _request(method: str, path: str, token: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {token}"]
    lines += ["Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _raw(port: int, data: bytes) -> bytes:
    """Send ``data``, read until the server closes (every request here says close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def _problem(answer: bytes) -> dict[str, object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower(), answer
    assert b"\r\nlocation:" not in head.lower(), answer
    return json.loads(body)  # type: ignore[no-any-return]


def _issued(served: Served) -> list[object]:
    answer = _raw(served.port, _request("GET", "/v1/certificates", served.alice))
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return json.loads(answer.partition(b"\r\n\r\n")[2])["certificates"]  # type: ignore[no-any-return]


def _chunked_issue(served: Served, codings: list[str]) -> bytes:
    body = b'{"nodeId": "n1", "keyType": "ec-p256"}'
    lines = ["POST /generate-cert HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"Authorization: Bearer {served.alice}", "Connection: close"]
    lines += [f"Transfer-Encoding: {coding}" for coding in codings]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return _raw(served.port, head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))


CODINGS = {
    "gzip before chunked": ["gzip, chunked"],
    "deflate before chunked": ["deflate,chunked"],
    "chunked twice": ["chunked, chunked"],
    "identity": ["identity"],
    "gzip alone": ["gzip"],
    "chunked before gzip": ["chunked, gzip"],
    "two fields, gzip then chunked": ["gzip", "chunked"],
    "an empty coding": [", chunked"],
    "an unknown coding": ["xchunked"],
}


@pytest.mark.parametrize("codings", CODINGS.values(), ids=CODINGS.keys())
def test_a_transfer_coding_other_than_chunked_is_refused_and_nothing_issued(served, codings):
    answer = _chunked_issue(served, codings)
    assert answer.startswith((b"HTTP/1.1 501", b"HTTP/1.1 400")), answer
    assert _problem(answer)["code"] in ("unsupported_transfer_coding", "malformed_request")
    assert _issued(served) == []


def test_transfer_encoding_on_http10_is_a_400(served):
    body = b'{"nodeId": "n1"}'
    head = b"POST /generate-cert HTTP/1.0\r\nAuthorization: Bearer %s\r\n" % served.alice.encode()
    answer = _raw(
        served.port,
        head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert "HTTP/1.1" in str(_problem(answer)["detail"])
    assert _issued(served) == []


def test_plain_chunked_is_served(served):
    answer = _chunked_issue(served, ["chunked"])
    assert answer.startswith(b"HTTP/1.1 201"), answer
    assert len(_issued(served)) == 1
    # A 201 names the new resource by path: never a Location built from the request.
    assert b"\r\nlocation: /v1/certificates/" in answer.lower()
    # No banner naming the server software (uvicorn's "Server: uvicorn").
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert b"\r\nserver:" not in head, head


HOSTS = {
    "none": [],
    "two": ["Host: 127.0.0.1", "Host: evil.example"],
    "two identical": ["Host: 127.0.0.1", "Host: 127.0.0.1"],
    "not a host": ["Host: a/b@c"],
    "a space": ["Host: a b"],
}


@pytest.mark.parametrize("hosts", HOSTS.values(), ids=HOSTS.keys())
def test_an_http11_request_without_exactly_one_valid_host_is_400(served, hosts):
    head = "\r\n".join(["GET /healthz HTTP/1.1", *hosts, "Connection: close"]) + "\r\n\r\n"
    answer = _raw(served.port, head.encode())
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert _problem(answer)["code"] == "malformed_request"


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.0\r\n\r\n",  # HTTP/1.0 needs no Host.
        b"GET /healthz HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",  # Empty is valid.
        b"GET /healthz HTTP/1.1\r\nHost: [::1]:8443\r\nConnection: close\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: certs.example.com\r\nConnection: close\r\n\r\n",
    ],
)
def test_valid_hosts_are_served(served, head):
    assert _raw(served.port, head).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nodes/"),
        ("GET", "/v1/ca/"),
        ("GET", "/healthz/"),
        ("POST", "/generate-cert/"),
        ("GET", "/v1/certificates/"),
        ("POST", "/v1/renew/"),
    ],
)
def test_a_trailing_slash_is_404_never_a_redirect(served, method, path):
    body = b'{"nodeId": "n1"}' if method == "POST" else b""
    request = _request(method, path, served.alice, body).replace(
        b"Host: 127.0.0.1", b"Host: evil.example"
    )
    answer = _raw(served.port, request)
    assert answer.startswith(b"HTTP/1.1 404"), answer
    assert b"evil.example" not in answer
    assert _problem(answer)["code"] == "not_found"


def _wait_for(log: Path, text: str, *, after: int) -> str:
    """What ``log`` gained past offset ``after``, once that holds ``text``."""
    for _ in range(200):  # Bounded: 20 s at most.
        content = log.read_text()[after:]
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never logged:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/generate-cert"), ("PUT", "/v1/nodes/n2"), ("POST", "/v1/renew")],
)
def test_a_client_that_hangs_up_mid_body_is_one_info_line(served, method, path):
    before = served.log.read_text()
    request = _request(method, path, served.admin, b"")
    request = request.replace(b"Content-Length: 0", b"Content-Length: 1000") + b'{"own'
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(request)
        time.sleep(0.2)  # Not a timing assertion: only lets the head reach the app first.
    line = f"client hung up before sending the whole body of {method} {path!r}"
    new = _wait_for(served.log, line, after=len(before))
    assert "ERROR" not in new, new
    assert "Traceback" not in new, new
    assert new.count("client hung up") == 1, new
    # The server carries on.
    assert _raw(served.port, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_no_refusal_above_was_logged_as_an_error(served):
    # Last in the module: every refused head, redirect-free 404 and hang-up above is in it.
    log = served.log.read_text()
    assert "ERROR" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
