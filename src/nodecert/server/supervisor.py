"""Several ``nodecert serve`` workers, each with a listening socket of its own (Linux).

uvicorn's supervisor hands one listening socket to every worker; whichever worker's event
loop wakes first accepts every pending connection (uvloop accepts in a loop). Clients that
open their connections together (a proxy's keep-alive pool, a load test) then often all
land on one worker while the others idle: half the throughput on two workers, measured.

With ``SO_REUSEPORT`` each worker listens on a socket of its own, all bound to the same
port, and the kernel spreads new connections over them by a hash of the addresses. The
supervisor keeps every socket open, so a worker that dies and is replaced leaves the
connections waiting in its queue to its replacement instead of resetting them. A worker
that died as it started is replaced only after a back-off (up to 30 s): while another
worker serves, its socket is closed meanwhile (the connections queued there are reset at
once, and the kernel sends new ones to the sockets that are read), and bound again for
the replacement.

Each worker ends when the supervisor does, even when it is killed with SIGKILL
(``server/lifeline.py``), so a restart finds the port free. Where ``SO_REUSEPORT`` does not
spread connections, the same supervisor hands every worker one shared socket.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process, logger

from nodecert.core.errors import ConfigurationError
from nodecert.server.lifeline import bind_to_parent

__all__ = ["SpreadingSupervisor", "reuse_port_available"]

# A worker that dies this soon after it was started failed to start (its application could
# not be built: a database server down, a full disk). Its replacement waits 1, 2, 4… up to
# 30 s, so that the supervisor does not spawn workers as fast as the machine allows (each
# start costs a second of CPU) until the fault is gone; a worker that lived longer is
# replaced at once.
_QUICK_DEATH_S = 5.0
_BACKOFF_MAX_S = 30.0


def reuse_port_available() -> bool:
    """Whether the kernel balances connections over ``SO_REUSEPORT`` sockets.

    Linux does; BSD and macOS accept the option but give every connection to one socket.
    """
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


class _Worker(Process):
    """uvicorn's worker process, which ends when the supervisor that started it dies."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        self.master_pid = os.getpid()
        super().__init__(config, sockets)

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover
        """Run in the worker: watch the master, then serve (uvicorn's own target)."""
        bind_to_parent(self.master_pid)
        super().target(sockets)


class SpreadingSupervisor(Multiprocess):
    """uvicorn's supervisor, giving worker ``i`` only ``sockets[i]`` (or, with
    ``spread=False``, every worker the one socket in ``sockets``).

    Starting, replacing a dead worker and restarting all (``SIGHUP``) follow uvicorn's
    own code; the sockets a worker gets differ, and a worker ends with its supervisor.
    """

    def __init__(
        self,
        config: Config,
        sockets: list[socket.socket],
        *,
        spread: bool = True,
        rebind: Callable[[], socket.socket] | None = None,
    ) -> None:
        if spread and len(sockets) != config.workers:
            raise ValueError("SpreadingSupervisor: one socket per worker")
        super().__init__(config, sockets=sockets)
        self._spread = spread
        # Set when a worker failed before serving and the supervisor stopped for it: the
        # caller then exits non-zero, so that a service manager restarts it
        # (Restart=on-failure), where a clean exit would leave it stopped for good.
        self.startup_failed = False
        self._started: dict[int, float] = {}
        self._quick_deaths: dict[int, int] = {}
        self._respawn_at: dict[int, float] = {}
        # Binds one more socket into the workers' SO_REUSEPORT group: a slot whose socket
        # was closed during a back-off gets a new one for its replacement.
        self._rebind = rebind

    def _spawn(self, index: int) -> Process:
        if self._spread and self.sockets[index].fileno() == -1 and self._rebind is not None:
            self.sockets[index] = self._rebind()
        process = _Worker(self.config, [self.sockets[index]] if self._spread else self.sockets)
        self._respawn_at.pop(index, None)  # A SIGHUP's restart may come first.
        self._started[index] = time.monotonic()
        process.start()
        return process

    def init_processes(self) -> None:
        """Start one worker per socket."""
        for index in range(self.processes_num):
            self.processes.append(self._spawn(index))

    def restart_all(self) -> None:
        """Replace each worker, its replacement serving before the old one is stopped."""
        for index, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            try:
                new = self._spawn(index)
            except ConfigurationError as exc:  # Its socket could not be bound again.
                logger.error("%s; worker [%s] is replaced later", exc.detail, index)
                continue
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    logger.error(
                        "New child process [%s] was not ready in time; keeping worker [%s]"
                        " and aborting the restart.",
                        new.pid,
                        old.pid,
                    )
                return
            old.terminate()
            old.join()
            self.processes[index] = new

    def handle_ttin(self) -> None:
        """SIGTTIN: one more worker, when the workers share one socket.

        With a socket per worker the sockets are bound before the workers start, so their
        number is fixed (``NODECERT_WORKERS``); the signal is then logged and ignored.
        """
        if self._spread:
            logger.warning("Received SIGTTIN; the number of workers is NODECERT_WORKERS here.")
            return
        logger.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        self.processes.append(self._spawn(len(self.processes)))

    def handle_ttou(self) -> None:
        """SIGTTOU: one worker fewer, when the workers share one socket (see SIGTTIN)."""
        if self._spread:
            logger.warning("Received SIGTTOU; the number of workers is NODECERT_WORKERS here.")
            return
        super().handle_ttou()

    def keep_subprocess_alive(self) -> None:
        """Replace a worker that died or hangs, on its own socket (later, if it died young)."""
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            due = self._respawn_at.get(index)
            if due is not None:
                if time.monotonic() >= due:
                    try:
                        self.processes[index] = self._spawn(index)
                    except ConfigurationError as exc:
                        logger.error("%s; trying again in %.0f s", exc.detail, _BACKOFF_MAX_S)
                        self._respawn_at[index] = time.monotonic() + _BACKOFF_MAX_S
                continue
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # It failed before serving: the next one would fail the same way.
                logger.error("Child process [%s] failed to start, stopping.", process.pid)
                self.startup_failed = True
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            lived = time.monotonic() - self._started.get(index, 0.0)
            if lived >= _QUICK_DEATH_S:
                self._quick_deaths[index] = 0
                logger.info("Child process [%s] died", process.pid)
                self.processes[index] = self._spawn(index)
                continue
            deaths = self._quick_deaths[index] = self._quick_deaths.get(index, 0) + 1
            delay = min(_BACKOFF_MAX_S, 2.0 ** (deaths - 1))
            logger.warning(
                "Child process [%s] died %.1f s after it started; starting another in %.0f s",
                process.pid,
                lived,
                delay,
            )
            self._respawn_at[index] = time.monotonic() + delay
            if self._spread and self._rebind is not None and self._serving_besides(index):
                # Nobody reads this socket until the replacement starts: closed, the
                # connections queued there are reset now instead of waiting up to
                # _BACKOFF_MAX_S, and new ones go to the sockets that are read.
                self.sockets[index].close()

    def _serving_besides(self, index: int) -> bool:
        return any(i != index and i not in self._respawn_at for i in range(len(self.processes)))
