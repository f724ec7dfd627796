"""The scheduled Lambda that finishes revocations at the CA (``RevocationSweepFunction``).

Revoking marks the ledger first (the very next authorization decision denies) and leaves
the CA's revocation in a durable outbox, so that a revoke-all of many certificates never
runs into the API's 20-second timeout. This function, run by an EventBridge schedule
(deploy/template.yaml), drains that outbox through
``Administration.finish_revocations(limit=...)``, batch after batch, until nothing is
pending, no batch makes progress (the CA is down: the next run tries again), or the
invocation's time is nearly up.

Handler: ``nodecert.aws.sweep.sweep_handler``. Wired once per container from the same
``NODECERT_*`` settings as the API function.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["BATCH", "SAFETY_MS", "drain", "sweep_handler"]

log = logging.getLogger("nodecert")

BATCH = 100
"""Revocations asked of the CA per ``finish_revocations`` call."""

SAFETY_MS = 30_000
"""No new batch starts with less than this much of the invocation left."""


class Drainable(Protocol):
    """What the sweep needs: ``Administration.finish_revocations``."""

    def finish_revocations(self, *, limit: int = 100) -> int:
        """Ask the CA for up to ``limit`` pending revocations; how many are still pending."""
        ...  # pragma: no cover - protocol


def drain(outbox: Drainable, remaining_ms: Any = None) -> dict[str, int]:
    """Drain ``outbox`` in batches of :data:`BATCH`.

    Args:
        outbox: The administration whose outbox to drain.
        remaining_ms: A callable giving the invocation's remaining milliseconds (Lambda's
            ``context.get_remaining_time_in_millis``), or None for no time limit.

    Returns:
        ``{"pending": n, "batches": b}``: what is left for the next run, and the calls made.
    """
    batches, before = 0, None
    while True:
        pending = outbox.finish_revocations(limit=BATCH)
        batches += 1
        if pending == 0:
            break
        if before is not None and pending >= before:
            log.warning("revocation sweep: no progress (%d pending); next run retries", pending)
            break
        if remaining_ms is not None and remaining_ms() < SAFETY_MS:
            break
        before = pending
    if pending:
        log.warning("revocation sweep: %d revocation(s) still pending at the CA", pending)
    else:
        log.info("revocation sweep: outbox empty after %d batch(es)", batches)
    return {"pending": pending, "batches": batches}


@functools.cache
def _outbox() -> Drainable:
    from nodecert.bootstrap import build_service, settings_from_environment

    settings = settings_from_environment()
    logging.getLogger("nodecert").setLevel(settings.log_level)
    return build_service(settings).administration


def sweep_handler(event: Mapping[str, Any], context: object) -> dict[str, int]:
    """Entry point: handler ``nodecert.aws.sweep.sweep_handler`` (the event is ignored)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return drain(_outbox(), remaining if callable(remaining) else None)
