"""Code that runs on an event loop must not wait: a flag for adapters to honour.

An HTTP adapter that runs a request's work on the event loop (cheap EC issuance) marks it
with :func:`never_wait`. An adapter that would have to wait there (a SQLite file lock held
by another worker) raises :class:`WouldBlockError` instead, before any side effect, and
the HTTP adapter runs the request again in its thread pool, where waiting is fine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["WouldBlockError", "must_not_wait", "never_wait"]

_ON_EVENT_LOOP: ContextVar[bool] = ContextVar("nodecert_on_event_loop", default=False)


class WouldBlockError(Exception):
    """Raised instead of waiting, inside :func:`never_wait`; never reaches a caller."""


@contextmanager
def never_wait() -> Iterator[None]:
    """Mark the code run inside as running on an event loop."""
    token = _ON_EVENT_LOOP.set(True)
    try:
        yield
    finally:
        _ON_EVENT_LOOP.reset(token)


def must_not_wait() -> bool:
    """Whether the current code runs inside :func:`never_wait`."""
    return _ON_EVENT_LOOP.get()
