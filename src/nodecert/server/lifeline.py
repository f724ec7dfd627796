"""A ``nodecert serve`` worker ends when its master does.

uvicorn's workers know nothing of their master: after a ``kill -9`` of the master they went
on serving with no parent, holding the port, and the next ``nodecert serve`` (or systemd's
restart) failed with "Address already in use" until someone killed them by hand.

Each worker therefore ties its life to the master's, twice:

- On Linux, ``prctl(PR_SET_PDEATHSIG, SIGTERM)``: the kernel sends the worker SIGTERM the
  moment the master dies, and uvicorn's handler shuts the worker down gracefully (requests
  in flight finish, the listening socket is closed). prctl(2): the signal follows the death
  of the *thread* that forked the worker; the supervisor forks from its main thread only.
- Everywhere, a daemon thread that watches ``os.getppid()``: when the parent is no longer
  the master (the worker was re-parented), it sends the same SIGTERM where there is no
  prctl, and on every platform ends the process after ``grace_s`` if the graceful shutdown
  has not (a hung request must not keep the port for ever).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

__all__ = ["GRACE_S", "bind_to_parent", "parent_death_signal"]

log = logging.getLogger("nodecert.server")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# uvicorn's graceful shutdown is bounded (GRACEFUL_SHUTDOWN_S, server/serve.py); this is
# the backstop beyond it.
GRACE_S = 30.0
_EXIT_ORPHANED = 70  # EX_SOFTWARE: the worker did not end by itself in time.


def parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux).

    Returns:
        Whether the kernel took the request; False elsewhere, or when prctl is missing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def bind_to_parent(
    master_pid: int, *, grace_s: float = GRACE_S, poll_s: float = 1.0
) -> threading.Thread:
    """End this worker when ``master_pid`` stops being its parent.

    Args:
        master_pid: The supervisor's process id, as the supervisor saw it.
        grace_s: How long the graceful shutdown may take before the process exits anyway.
        poll_s: How often the watching thread looks at the parent.

    Returns:
        The watching thread (a daemon).
    """
    # When the master died before prctl took effect, the kernel will send nothing.
    has_signal = parent_death_signal(signal.SIGTERM) and os.getppid() == master_pid
    watcher = threading.Thread(
        target=_watch,
        args=(master_pid, has_signal, grace_s, poll_s),
        name="nodecert-parent-watch",
        daemon=True,
    )
    watcher.start()
    return watcher


def _watch(master_pid: int, has_signal: bool, grace_s: float, poll_s: float) -> None:
    while os.getppid() == master_pid:
        time.sleep(poll_s)
    log.warning("server: the master process is gone; this worker stops")
    if not has_signal:
        os.kill(os.getpid(), signal.SIGTERM)  # What the kernel would have sent.
    time.sleep(grace_s)
    log.error("server: the worker did not stop within %.0f s of its master; exiting", grace_s)
    os._exit(_EXIT_ORPHANED)
