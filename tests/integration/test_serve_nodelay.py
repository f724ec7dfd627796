"""`nodecert serve` sockets: TCP_NODELAY for kept-alive requests, one socket per worker."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from nodecert.core.errors import ConfigurationError
from nodecert.server.serve import bind, worker_sockets
from nodecert.server.supervisor import reuse_port_available
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


def test_worker_sockets_share_one_port_and_each_accepts() -> None:
    sockets = worker_sockets("127.0.0.1", 0, 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1
        assert all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for sock in sockets)
        assert all(sock.proto == socket.IPPROTO_TCP for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def test_worker_sockets_refuse_a_port_in_use_even_by_another_reuse_port_group() -> None:
    other = worker_sockets("127.0.0.1", 0, 2)  # As a second nodecert would find them.
    try:
        port = other[0].getsockname()[1]
        with pytest.raises(ConfigurationError, match="cannot listen on"):
            worker_sockets("127.0.0.1", port, 2)
    finally:
        for sock in other:
            sock.close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _established_on(port: int) -> set[int]:
    """Socket inodes of established connections whose local port is ``port``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            inodes.add(int(fields[9]))
    return inodes


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def _spread(port: int, parent: int) -> dict[int, int]:
    """Open 32 connections at once; how many each worker of ``parent`` serves."""
    connections = []
    try:
        # As a proxy's pool or a load test opens them. With one shared socket, one worker
        # often accepted them all.
        for _ in range(32):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.connect()
            connections.append(connection)
        for connection in connections:
            connection.request("GET", "/healthz")
            assert connection.getresponse().read()
        served = _established_on(port)
        return {child: len(_socket_inodes(child) & served) for child in _children(parent)}
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.skipif(not reuse_port_available(), reason="SO_REUSEPORT balances on Linux only")
def test_connections_are_spread_over_the_workers_and_a_replaced_worker_keeps_its_share(
    tmp_path: Path,
) -> None:
    port = free_port()
    server = start_server(
        nodecert_env(tmp_path / "home", port, workers="2"), tmp_path / "serve.log"
    )
    try:
        per_worker = _spread(port, server.pid)
        busy = {pid: n for pid, n in per_worker.items() if n}
        # A hash spreads 32 connections over 2 workers: all on one has odds of 2 in 2**32.
        assert len(busy) == 2, per_worker
        assert sum(busy.values()) == 32
        # A worker killed outright is replaced on its own socket, which stayed open.
        victim = next(iter(busy))
        os.kill(victim, signal.SIGKILL)
        for _ in range(200):
            replaced = [pid for pid in _children(server.pid) if pid not in busy]
            if replaced and _socket_inodes(replaced[0]):
                break
            time.sleep(0.05)
        for _ in range(200):
            per_worker = _spread(port, server.pid)
            if len([n for n in per_worker.values() if n]) == 2:
                break
            time.sleep(0.05)  # The replacement is still starting.
        assert victim not in per_worker
        assert len([n for n in per_worker.values() if n]) == 2, per_worker
    finally:
        stop_server(server)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_port_in_use_says_so_and_never_that_it_serves(
    tmp_path: Path,
    workers: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nodecert.cli import commands as cli

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        env = nodecert_env(tmp_path / "home", taken.getsockname()[1], workers=workers)
        monkeypatch.setattr(os, "environ", env)
        assert cli.main(["serve"]) == 1
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert "Address already in use" in err
    assert "serving on" not in err
