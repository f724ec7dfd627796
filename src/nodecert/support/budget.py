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
from collections.abc import Callable
from contextvars import ContextVar, Token

__all__ = ["deadline", "time_budget"]

_DEADLINE: ContextVar[float | None] = ContextVar("nodecert_deadline", default=None)


class time_budget:  # noqa: N801 - used as ``with time_budget(s) as at:``, like a function.
    """Run the block with ``seconds`` to spend; yields the deadline (on ``monotonic``).

    A budget inside another never extends it: the earlier deadline holds. The clock is read
    when the block is entered. A class rather than a generator-based context manager: the
    ledger's committer opens one for every batch.
    """

    __slots__ = ("_monotonic", "_seconds", "_token")

    def __init__(self, seconds: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._monotonic = monotonic
        self._token: Token[float | None] | None = None

    def __enter__(self) -> float:
        if self._token is not None:
            raise RuntimeError("time_budget: this budget is open already")
        outer = _DEADLINE.get()
        at = self._monotonic() + max(0.0, self._seconds)
        if outer is not None:
            at = min(at, outer)
        self._token = _DEADLINE.set(at)
        return at

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _DEADLINE.reset(self._token)
            self._token = None


def deadline() -> float | None:
    """The current request's deadline on the monotonic clock, or None without a budget."""
    return _DEADLINE.get()
