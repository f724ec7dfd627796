"""A time budget for the current request, which slow backends stop at.

A Lambda function is stopped at its timeout whatever it is doing; API Gateway gives up at
29 seconds. The front end that knows the time left (the Lambda handler, from its context)
opens a budget around the request; a backend that makes remote calls (ACM PCA) checks
:func:`deadline` before each and refuses, as a transient failure, to start one that cannot
finish in time. Work that can wait (CA revocations queued in the ledger's outbox) is left
for a later drain instead of being cut off mid-way by the platform.

The budget lives in a :class:`contextvars.ContextVar`, so concurrent requests (threads,
tasks) each have their own; outside a budget there is no limit beyond the backend's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["deadline", "time_budget"]

_DEADLINE: ContextVar[float | None] = ContextVar("nodecert_deadline", default=None)


@contextmanager
def time_budget(
    seconds: float, *, monotonic: Callable[[], float] = time.monotonic
) -> Iterator[float]:
    """Run the block with ``seconds`` to spend; yields the deadline (on ``monotonic``).

    A budget inside another never extends it: the earlier deadline holds.
    """
    outer = _DEADLINE.get()
    at = monotonic() + max(0.0, seconds)
    if outer is not None:
        at = min(at, outer)
    token = _DEADLINE.set(at)
    try:
        yield at
    finally:
        _DEADLINE.reset(token)


def deadline() -> float | None:
    """The current request's deadline on the monotonic clock, or None without a budget."""
    return _DEADLINE.get()
