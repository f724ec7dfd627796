"""The thread that writes one worker's metrics to its counts file: every interval, when a
scrape in another worker asks, and at exit.

A worker counts in plain memory (:class:`nodecert.support.metrics.PrometheusMetrics`) and
its counts reach prometheus-client's per-process file only when flushed. The thread
flushes at least every ``interval_s`` (what a worker killed with SIGKILL can lose), and at
once when another worker connects to its socket (``flush-<pid>.sock`` in the counts
directory): ``GET /metrics``, whichever worker answers it, first asks every other worker
to flush and waits for each answer, so a scrape counts every request answered before it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["ASK_TIMEOUT_S", "Flusher", "ask_to_flush"]

log = logging.getLogger("nodecert")

# How long a scrape waits, in all, for the other workers to flush. A worker that does not
# answer in time (stopped, or its thread starved) is read as its file stands: at most one
# interval behind.
ASK_TIMEOUT_S = 0.5
_PREFIX = "flush-"


def _socket_path(directory: Path, pid: int) -> Path:
    return directory / f"{_PREFIX}{pid}.sock"


class Flusher:
    """Calls ``flush`` every ``interval_s``, when asked through its socket, and at :meth:`stop`.

    Args:
        flush: Writes the pending counts; it must log its own failures.
        directory: The counts directory (``PROMETHEUS_MULTIPROC_DIR``).
        interval_s: The longest time between two flushes.
    """

    def __init__(self, flush: Callable[[], None], directory: Path, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"metrics: flush interval must be positive, not {interval_s!r}")
        self._flush = flush
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self.path: Path | None = _socket_path(directory, os.getpid())
        self._listener: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(str(self.path))
            self._listener.listen(16)
            self._listener.settimeout(interval_s)
        except OSError as exc:  # A directory path too long for a socket, say.
            log.warning(
                "metrics: no flush socket at %s (%s): scrapes may miss up to %.1f s of this"
                " worker's counts",
                self.path,
                exc,
                interval_s,
            )
            self._listener.close()
            self._listener, self.path = None, None
        self._thread = threading.Thread(target=self._run, name="nodecert-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            connection = self._wait()
            if self._stopped.is_set():
                if connection is not None:
                    connection.close()
                return
            self._flush()
            if connection is not None:
                with connection, contextlib.suppress(OSError):
                    connection.sendall(b"k")

    def _wait(self) -> socket.socket | None:
        # The next request to flush, or None when the interval is up first.
        if self._listener is None:
            self._stopped.wait(self._interval_s)
            return None
        try:
            connection, _ = self._listener.accept()
        except TimeoutError:
            return None
        except OSError:  # Closed by stop().
            self._stopped.wait(self._interval_s)
            return None
        return connection

    def stop(self) -> None:
        """Stop answering, remove the socket, and flush what is pending (at exit)."""
        self._stopped.set()
        if self._listener is not None and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # Wakes accept() on Linux.
            self._listener.close()
        self._flush()


def ask_to_flush(directory: Path, *, own: Path | None, timeout_s: float = ASK_TIMEOUT_S) -> int:
    """Ask every other worker with a socket in ``directory`` to flush; wait for each.

    Returns the number of workers that answered. A socket nobody listens on (a worker that
    ended, whose counts are already in its file) is skipped.
    """
    deadline = time.monotonic() + timeout_s
    answered = 0
    for path in sorted(directory.glob(f"{_PREFIX}*.sock")):
        remaining = deadline - time.monotonic()
        if path == own:
            continue
        if remaining <= 0:
            log.warning("metrics: a scrape gave up asking the workers to flush after %.1f s",
                        timeout_s)  # fmt: skip
            break
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as asking:
            asking.settimeout(remaining)
            try:
                asking.connect(str(path))
                answered += asking.recv(1) == b"k"
            except OSError:  # Ended (refused), or too slow: read its file as it stands.
                continue
    return answered
