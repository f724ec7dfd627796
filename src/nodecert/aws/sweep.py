"""The scheduled Lambda that finishes revocations at the CA (``RevocationSweepFunction``).

Revoking marks the ledger first (the very next authorization decision denies) and leaves
the CA's revocation in a durable outbox, so that a revoke-all of many certificates never
runs into the API's 20-second timeout. This function, run by an EventBridge schedule
(deploy/template.yaml), drains that outbox through
``Administration.finish_revocations(limit=..., failed=...)``, batch after batch, until
nothing is pending, a batch neither sends nor tries anything new, too many revocations
failed in this run (the CA is down: the next run tries again), or the invocation's time is
nearly up. On DynamoDB a batch reads only the outbox table, by strongly consistent
``Query`` (``nodecert.store.dynamodb.outbox``), never a ``Scan``; after an upgrade, the
first runs also move what an older version queued (and its audit entries) in the limits table
(``nodecert.store.dynamodb.upgrade``).

Every step can be cut short and run again: the outbox item is deleted only after the CA
took the revocation, a CA told twice answers "already revoked" (not an error), and a
revoke-all cut short is finished first by the next run. A revocation the CA refuses (a
disabled or deleted CA, an error of its own) stays queued, is logged with its serial, and
is skipped for the rest of the run, so it never holds up the others.

The result says why the run stopped (``stopped``: ``empty``, ``time``, ``no-progress`` or
``failures``) and what is left (``pending``) for the next run; the same is logged.

Handler: ``nodecert.aws.sweep.sweep_handler``. Wired once per container from the same
``NODECERT_*`` settings as the API function.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from nodecert.support.budget import time_budget

__all__ = ["BATCH", "MAX_FAILURES", "SAFETY_MS", "drain", "sweep_handler"]

log = logging.getLogger("nodecert")

BATCH = 100
"""Revocations asked of the CA per ``finish_revocations`` call."""

SAFETY_MS = 30_000
"""No new batch starts with less than this much of the invocation left, and no CA call
starts that could not finish before it (:func:`nodecert.support.budget.time_budget`)."""

MAX_FAILURES = 25
"""Revocations the CA may refuse in one run before the run stops (the CA looks down)."""


class Drainable(Protocol):
    """What the sweep needs: ``Administration.finish_revocations``."""

    def finish_revocations(self, *, limit: int = 100, failed: set[str] | None = None) -> int:
        """Ask the CA for up to ``limit`` pending revocations; how many are still pending."""
        ...  # pragma: no cover - protocol


def drain(outbox: Drainable, remaining_ms: Callable[[], int] | None = None) -> dict[str, Any]:
    """Drain ``outbox`` in batches of :data:`BATCH`.

    Args:
        outbox: The administration whose outbox to drain.
        remaining_ms: The invocation's remaining milliseconds (Lambda's
            ``context.get_remaining_time_in_millis``), or None for no time limit.

    Returns:
        ``{"pending": n, "batches": b, "failed": f, "stopped": why}``: what is left for the
        next run, the calls made, the revocations the CA refused in this run, and why the
        run stopped (``empty``, ``time``, ``no-progress``, ``failures``).
    """
    if remaining_ms is None:
        return _drain(outbox, None)
    with time_budget(max(0.0, (remaining_ms() - SAFETY_MS) / 1000)):
        return _drain(outbox, remaining_ms)


def _drain(outbox: Drainable, remaining_ms: Callable[[], int] | None) -> dict[str, Any]:
    failed: set[str] = set()
    batches, before, stopped = 0, None, "empty"
    while True:
        tried = len(failed)
        pending = outbox.finish_revocations(limit=BATCH, failed=failed)
        batches += 1
        if pending == 0:
            break
        if remaining_ms is not None and remaining_ms() < SAFETY_MS:
            stopped = "time"
            break
        if len(failed) >= MAX_FAILURES:
            stopped = "failures"
            break
        if before is not None and pending >= before and len(failed) == tried:
            stopped = "no-progress"
            break
        before = pending
    result = {"pending": pending, "batches": batches, "failed": len(failed), "stopped": stopped}
    if pending:
        log.warning(
            "revocation sweep: stopped (%s) with %d revocation(s) still pending at the CA,"
            " %d refused in this run; the next run goes on",
            stopped,
            pending,
            len(failed),
        )
    else:
        log.info("revocation sweep: outbox empty after %d batch(es)", batches)
    return result


@functools.cache
def _outbox() -> Drainable:
    from nodecert.aws.cahome import install_packaged_chain
    from nodecert.bootstrap import build_service, settings_from_environment

    settings = settings_from_environment()
    logging.getLogger("nodecert").setLevel(settings.log_level)
    install_packaged_chain(settings, on_lambda=bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")))
    return build_service(settings).administration


def sweep_handler(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    """Entry point: handler ``nodecert.aws.sweep.sweep_handler`` (the event is ignored)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return drain(_outbox(), remaining if callable(remaining) else None)
