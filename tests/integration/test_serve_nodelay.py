"""`nodecert serve` with several workers answers kept-alive requests without a delayed-ACK stall."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

import pytest

from nodecert.adapters.serve import bind
from nodecert.errors import ConfigurationError
from tests.processes import free_port, nodecert_env, start_server, stop_server


def test_the_listening_socket_is_tcp_so_accepted_ones_get_nodelay() -> None:
    listener = bind("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
        client = socket.create_connection(listener.getsockname()[:2])
        accepted, _ = listener.accept()
        # asyncio sets TCP_NODELAY only when proto is IPPROTO_TCP; an accepted socket
        # inherits proto from the listener.
        assert accepted.proto == socket.IPPROTO_TCP
        accepted.close()
        client.close()
    finally:
        listener.close()


def test_an_address_in_use_is_a_clear_error() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(ConfigurationError, match=r"cannot listen on 127\.0\.0\.1"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_two_workers_serve_keep_alive_requests(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(
        nodecert_env(tmp_path / "home", port, workers="2"), tmp_path / "serve.log"
    )
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        # Twenty requests on one connection: with the delayed-ACK stall each took ~40 ms.
        # The check is on the socket option, not on time, so that it cannot be flaky.
        for _ in range(20):
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert response.status == 200
            response.read()
        connection.close()
    finally:
        stop_server(server)
    assert "Started parent process" in (tmp_path / "serve.log").read_text()
