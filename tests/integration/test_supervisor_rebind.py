"""SpreadingSupervisor: a slot whose socket cannot be bound again is retried later, not lost.

A slot's socket is closed while its worker waits out a back-off (server/supervisor.py);
binding it again may fail (the port's group gone, a descriptor limit). The supervisor then
logs it and tries again after the longest back-off, and a SIGHUP's restart keeps the old
worker of that slot.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from typing import Any

import pytest
import uvicorn
from uvicorn.supervisors.multiprocess import SIGNALS

from nodecert.core.errors import ConfigurationError
from nodecert.server import serve, supervisor
from nodecert.server.supervisor import SpreadingSupervisor


class _Serving:
    """A worker that answers its health check (never started: nothing is spawned)."""

    def is_alive(self, timeout: float = 5) -> bool:
        return True


def _refused() -> socket.socket:
    raise ConfigurationError("NODECERT_HOST/NODECERT_PORT: cannot listen on 127.0.0.1:1: test")


@pytest.fixture
def closed_slot() -> Any:
    sockets = serve.worker_sockets("127.0.0.1", 0, 2)
    config = uvicorn.Config("os:abort", factory=True, workers=2, log_level="critical")
    # uvicorn's supervisor takes over the process's signals: given back afterwards.
    handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}
    spread = SpreadingSupervisor(config, sockets, rebind=_refused)
    spread.processes = [_Serving(), _Serving()]  # type: ignore[list-item]
    sockets[1].close()  # As during slot 1's back-off.
    yield spread
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    for sock in spread.sockets:
        sock.close()


def test_a_respawn_whose_socket_cannot_be_bound_is_tried_again_later(
    closed_slot: SpreadingSupervisor, caplog: pytest.LogCaptureFixture
) -> None:
    closed_slot._respawn_at[1] = 0.0  # Due now.
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        closed_slot.keep_subprocess_alive()
    assert "cannot listen" in caplog.text and "trying again in 30 s" in caplog.text
    assert closed_slot._respawn_at[1] > time.monotonic() + supervisor._BACKOFF_MAX_S - 5
    assert isinstance(closed_slot.processes[1], _Serving)  # Nothing was spawned.


def test_a_restart_keeps_the_slot_whose_socket_cannot_be_bound(
    closed_slot: SpreadingSupervisor,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spawned: list[int] = []
    spawn = closed_slot._spawn

    def recorded(index: int) -> Any:
        if index == 0:
            spawned.append(index)
            raise ConfigurationError("slot 0: not started in this test")
        return spawn(index)

    monkeypatch.setattr(closed_slot, "_spawn", recorded)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        closed_slot.restart_all()
    assert spawned == [0]
    assert "worker [1] is replaced later" in caplog.text
    assert all(isinstance(p, _Serving) for p in closed_slot.processes)
