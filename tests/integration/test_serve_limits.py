"""`nodecert serve` bounds the request head: 431 past NODECERT_MAX_HEADER_BYTES."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.processes import free_port, nodecert_env, start_server, stop_server


def _raw(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and not head.startswith(b"GET"):
                break
            if len(answer) > 65536 or (answer.count(b"\r\n\r\n") and b"close" in answer):
                break
        return answer


@pytest.fixture(scope="module", params=["1", "2"], ids=["1 worker", "2 workers"])
def port(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    home = tmp_path_factory.mktemp("limits")
    port = free_port()
    env = nodecert_env(home / "data", port, workers=request.param, max_header_bytes="12000")
    server = start_server(env, home / "serve.log")
    try:
        yield port
    finally:
        stop_server(server)


def _get(port: int, header_bytes: int) -> bytes:
    head = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
        + b"a" * header_bytes
        + b"\r\n\r\n"
    )
    return _raw(port, head)


def test_a_normal_head_is_served(port: int) -> None:
    assert _get(port, 8000).startswith(b"HTTP/1.1 200")


def test_an_oversized_head_is_431_problem(port: int) -> None:
    answer = _get(port, 13_000)
    assert answer.startswith(b"HTTP/1.1 431")
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["code"] == "headers_too_large"
    assert "12000 bytes" in body["detail"]


def test_a_huge_head_is_cut_off_and_the_server_carries_on(port: int) -> None:
    answer = _get(port, 10_000_000)
    # The 431, or a reset when the server closed on the rest of the 10 MB still unread.
    assert answer.startswith(b"HTTP/1.1 431") or answer == b"RESET"
    assert _get(port, 100).startswith(b"HTTP/1.1 200")


def test_a_malformed_request_is_still_400(port: int) -> None:
    assert _raw(port, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400")
