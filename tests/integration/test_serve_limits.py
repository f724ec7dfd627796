"""`nodecert serve` bounds the request head: 431 past NODECERT_MAX_HEADER_BYTES."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

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
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Path]]:
    """A server's port and its log file."""
    home = tmp_path_factory.mktemp("limits")
    port = free_port()
    env = nodecert_env(home / "data", port, workers=request.param, max_header_bytes="12000")
    server = start_server(env, home / "serve.log")
    try:
        yield port, home / "serve.log"
    finally:
        stop_server(server)


@pytest.fixture
def port(served: tuple[int, Path]) -> int:
    return served[0]


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


SMUGGLING = {
    "not HTTP": b"NOT HTTP AT ALL\r\n\r\n",
    "Transfer-Encoding and Content-Length": b"POST /v1/authorize HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "two Content-Lengths": b"POST /v1/authorize HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
    "signed Content-Length": b"POST /v1/authorize HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: +2\r\n\r\n{}",
    "folded header": b"POST /v1/authorize HTTP/1.1\r\nHost: x\r\nX-Nodecert-Node: n1\r\n"
    b" n2\r\nContent-Length: 0\r\n\r\n",
    "bare LF": b"POST /v1/authorize HTTP/1.1\nHost: x\nContent-Length: 0\n\n",
    "NUL in a header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "space before the colon": b"POST /v1/authorize HTTP/1.1\r\nHost: x\r\n"
    b"X-Nodecert-Node : n1\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("head", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_a_malformed_request_is_a_400_problem_and_closed(port: int, head: bytes) -> None:
    # One answer, then the connection closes: nothing smuggled after it is served.
    answer = _raw(port, head)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"HTTP/1.1 200" not in answer and b"HTTP/1.1 403" not in answer, answer
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head_part.lower()
    problem = json.loads(body)
    assert (problem["status"], problem["code"]) == (400, "malformed_request")


def test_refusals_are_info_lines_not_warnings(served: tuple[int, Path]) -> None:
    # Anyone who can connect can send garbage: each refusal is one INFO line naming the
    # client and the code, never uvicorn's WARNING, and none of the request's bytes.
    port, log = served
    for _ in range(3):
        assert _raw(port, b"NOT HTTP secret-looking-bytes\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert _get(port, 13_000).startswith(b"HTTP/1.1 431")
    assert _get(port, 100).startswith(b"HTTP/1.1 200")  # The log is written by now.
    text = log.read_text()
    assert "Invalid HTTP request received" not in text
    assert "secret-looking-bytes" not in text
    assert text.count("400 malformed_request") >= 3
    assert "431 headers_too_large" in text
