"""The background half of revocations that always finish: drain the CA outbox on a timer.

Every revocation is queued for the CA in the same transaction that marks the ledger row
(``RevocationOutbox``), and the request that revoked tries to tell the CA at once. When the
CA is down, the queue is what is left; ``nodecert serve`` runs a :class:`RevocationDrainer`
in every worker, which calls ``Administration.finish_revocations`` until the queue is empty
(several workers draining at once is harmless: telling the CA twice is not an error). On
AWS a scheduled Lambda does the same (``deploy/template.yaml``).
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
        """Drain once; the number still queued, or None when the store could not answer.

        The revocations the CA refused are skipped by the next runs, so that refusals at
        the head of the queue do not hold up the rest; once a run neither tries nor sends
        anything new, the next one tries them all again.
        """
        tried = len(self._failed)
        try:
            left = self._finish(failed=self._failed)
        except NodecertError as exc:
            log.warning("revocation: draining the CA queue failed (%s); retrying later", exc)
            return None
        finally:
            self.runs += 1
        if len(self._failed) == tried and left >= self._left:
            self._failed.clear()  # Nothing new tried, nothing sent: retry the refused.
        self._left = left
        if left:
            log.warning("revocation: %d CA revocation(s) still queued", left)
        return left

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s * random.uniform(0.5, 1.5)):  # noqa: S311
            self.run_once()
