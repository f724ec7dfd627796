"""The background half of revocations that always finish: drain the CA outbox on a timer.

Every revocation is queued for the CA in the same transaction that marks the ledger row
(``RevocationOutbox``), and the request that revoked tries to tell the CA at once. When the
CA is down, the queue is what is left; ``nodecert serve`` runs a :class:`RevocationDrainer`
in every worker, which calls ``Administration.finish_revocations`` until the queue is empty
(several workers draining at once is harmless: telling the CA twice is not an error). On
AWS a scheduled Lambda does the same (``deploy/template.yaml``).

The drainer outlives any error of a run, expected (the store or the CA unavailable) or not
(a bug, an ``OSError`` nobody mapped): a background retry that stopped for good would leave
revocations queued with nobody to send them. A failure is logged once, when it starts (with
its traceback if unexpected), not on every run while it lasts; recovery is logged too.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from nodecert.core.errors import NodecertError

__all__ = ["RevocationDrainer"]

log = logging.getLogger("nodecert.revocation")


class RevocationDrainer:
    """Calls ``finish`` every ``interval_s`` seconds (with jitter) in a daemon thread.

    Args:
        finish: ``Administration.finish_revocations``: sends queued revocations to the CA
            (skipping and adding to ``failed=`` the ones the CA refuses) and returns how
            many are still queued.
        interval_s: Seconds between runs; each run waits 0.5 to 1.5 times this, so workers
            started together do not drain in step.
    """

    def __init__(self, finish: Callable[..., int], *, interval_s: float = 60.0) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s: must be positive")
        self._finish = finish
        self._failed: set[str] = set()
        self._left = 0
        self._problem: str | None = None
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="nodecert-revocation-drainer", daemon=True
        )
        self.runs = 0

    def start(self) -> None:
        """Start draining in the background."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the current run (if any)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def run_once(self) -> int | None:
        """Drain once; the number still queued, or None when the run failed.

        The revocations the CA refused are skipped by the next runs, so that refusals at
        the head of the queue do not hold up the rest; once a run neither tries nor sends
        anything new, the next one tries them all again. Never raises.
        """
        tried = len(self._failed)
        try:
            left = self._finish(failed=self._failed)
        except NodecertError as exc:
            self._failing(exc, exc.detail, unexpected=False)
            return None
        except Exception as exc:  # Whatever it is, the next run must still come.
            self._failing(exc, f"{type(exc).__name__}: {exc}", unexpected=True)
            return None
        finally:
            self.runs += 1
        if self._problem is not None:
            log.warning("revocation: draining the CA queue works again")
            self._problem = None
        if len(self._failed) == tried and left >= self._left:
            self._failed.clear()  # Nothing new tried, nothing sent: retry the refused.
        if left and left != self._left:
            log.warning("revocation: %d CA revocation(s) still queued", left)
        self._left = left
        return left

    def _failing(self, exc: Exception, detail: str, *, unexpected: bool) -> None:
        # One kind of failure is one problem, whatever its message says this time (a
        # serial, a count): it is logged when it starts, and again only once it changes.
        problem = type(exc).__qualname__
        if problem == self._problem:
            return
        self._problem = problem
        message = "revocation: draining the CA queue failed (%s); retrying later"
        if unexpected:
            log.exception(message, detail)
        else:
            log.warning(message, detail)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s * random.uniform(0.5, 1.5)):  # noqa: S311
            self.run_once()
