"""Slow and hostile clients against ``nodecert serve`` (issue 12).

A request head or body left unfinished used to pin its connection for ever; enough of
them exhausted the descriptors, and then nginx's ``auth_request`` calls failed closed for
every node. Now the head and the body each have a deadline (408, then close), and beyond
``NODECERT_LIMIT_CONCURRENCY`` connections a request is answered 503 at once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import free_port, nodecert_env, start_server, stop_server

HALF_HEAD = b"POST /v1/authorize HTTP/1.1\r\nHost: localhost\r\nX-Nodecert-Node: n1\r\n"
HALF_BODY = (
    b"POST /v1/authorize HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    b'Content-Length: 200\r\n\r\n{"nodeId": '
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    env = nodecert_env(
        tmp_path / "home",
        port,
        head_timeout_s="1",
        body_timeout_s="2",
        limit_concurrency="40",
    )
    process = start_server(env, tmp_path / "serve.log")
    try:
        yield port
    finally:
        stop_server(process)


def _open(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(data)
    return sock


def _reply(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_half_sent_heads_and_bodies_are_answered_408_and_closed(server: int) -> None:
    started = time.monotonic()
    heads = [_open(server, HALF_HEAD) for _ in range(15)]
    bodies = [_open(server, HALF_BODY) for _ in range(15)]
    silent = [socket.create_connection(("127.0.0.1", server), timeout=15) for _ in range(5)]
    try:
        for sock in heads + bodies:
            reply = _reply(sock)  # Returns only once the server has closed.
            assert reply.startswith(b"HTTP/1.1 408 "), reply[:80]
            assert b"request_timeout" in reply
        for sock in silent:
            reply = _reply(sock)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 408 "), reply[:80]
        # Generous: the deadlines are 1 s and 2 s; a loaded machine may add a few seconds.
        assert time.monotonic() - started < 12
        assert _healthz(server) == 200
    finally:
        for sock in heads + bodies + silent:
            sock.close()


def test_a_slow_but_steady_client_within_the_deadline_is_served(server: int) -> None:
    sock = _open(server, b"GET /healthz HTTP/1.1\r\n")
    try:
        time.sleep(0.3)
        sock.sendall(b"Host: localhost\r\nConnection: close\r\n\r\n")
        assert _reply(sock).startswith(b"HTTP/1.1 200 ")
    finally:
        sock.close()


def _one_reply(sock: socket.socket) -> bytes:
    """One whole reply (head and Content-Length body) read off a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data[:80]
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, body[:80]
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_kept_alive_connection_gets_a_new_head_deadline_for_each_request(
    server: int,
) -> None:
    # One timer per connection serves every request's deadline (it looks again when it
    # fires): after two quick requests, a third head left half-sent must still meet the
    # 1 s head deadline, counted from its own start, not from the connection's.
    sock = _open(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert _one_reply(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.7)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _one_reply(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.7)  # The first request's timer has fired by now, with nothing to do.
        started = time.monotonic()
        sock.sendall(HALF_HEAD)
        reply = _reply(sock)
        waited = time.monotonic() - started
        assert reply.startswith(b"HTTP/1.1 408 "), reply[:80]
        assert 0.9 <= waited < 6, waited
    finally:
        sock.close()


def test_a_body_that_outlasts_the_head_deadline_but_not_its_own_is_served(
    server: int,
) -> None:
    # The head's deadline is 1 s and the body's 2 s: the connection's timer fires at 1 s,
    # finds the body's deadline later, and waits on.
    body = b'{"nodeId": "n1"}'
    sock = _open(
        server,
        b"POST /v1/authorize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n",
    )
    try:
        sock.sendall(body[:4])
        time.sleep(1.3)
        sock.sendall(body[4:])
        reply = _reply(sock)
        assert reply.startswith(b"HTTP/1.1 "), reply[:80]
        assert not reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    finally:
        sock.close()


def test_beyond_the_concurrency_limit_requests_get_503_and_the_service_recovers(
    server: int,
) -> None:
    hogs = [_open(server, HALF_HEAD) for _ in range(45)]
    try:
        time.sleep(0.2)
        assert _healthz(server) == 503
        # A problem document like every other refusal, with Retry-After.
        probe = _open(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = _reply(probe)
        probe.close()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 "), reply[:200]
        assert b"content-type: application/problem+json" in head.lower()
        assert b"retry-after: " in head.lower()
        assert json.loads(body)["code"] == "overloaded"
    finally:
        for sock in hogs:
            sock.close()
    deadline = time.monotonic() + 10
    while _healthz(server) != 200:
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.1)


def test_a_body_deadline_shorter_than_the_head_deadline_is_kept(tmp_path: Path) -> None:
    # The connection's timer was started for the 3 s head deadline; the 1 s body deadline
    # that follows is earlier, so the timer must be moved, not waited out.
    port = free_port()
    env = nodecert_env(tmp_path / "home", port, head_timeout_s="3", body_timeout_s="1")
    process = start_server(env, tmp_path / "serve.log")
    try:
        started = time.monotonic()
        sock = _open(port, HALF_BODY)
        try:
            reply = _reply(sock)
        finally:
            sock.close()
        waited = time.monotonic() - started
        assert reply.startswith(b"HTTP/1.1 408 "), reply[:80]
        assert waited < 2.5, waited
    finally:
        stop_server(process)
