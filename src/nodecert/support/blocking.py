"""Code that runs on an event loop must not wait: a flag for adapters to honour.

An HTTP adapter that runs a request's work on the event loop (cheap EC issuance) marks it
with :func:`never_wait`. An adapter that would have to wait there (a SQLite file lock held
by another worker) raises :class:`WouldBlockError` instead, before any side effect, and
the HTTP adapter runs the request again in its thread pool, where waiting is fine.

Code inside :func:`never_wait` may also hand a callback to :func:`when_loop_yields`, which
runs it once the event loop has run the other callbacks that were ready (the other
requests that arrived with this one), instead of at once: the SQLite group committer wakes
its thread that way, so the rows of requests that arrived together share one commit.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

__all__ = ["WouldBlockError", "must_not_wait", "never_wait", "when_loop_yields"]

_ON_EVENT_LOOP: ContextVar[bool] = ContextVar("nodecert_on_event_loop", default=False)


class WouldBlockError(Exception):
    """Raised instead of waiting, inside :func:`never_wait`; never reaches a caller."""


class never_wait:  # noqa: N801 - used as ``with never_wait():``, like a function.
    """Mark the code run inside as running on an event loop.

    A class rather than a generator-based context manager: it is entered on every request
    that runs on the loop, and this costs a third as much.
    """

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _ON_EVENT_LOOP.set(True)

    def __exit__(self, *exc_info: object) -> None:
        _ON_EVENT_LOOP.reset(self._token)


def must_not_wait() -> bool:
    """Whether the current code runs inside :func:`never_wait`."""
    return _ON_EVENT_LOOP.get()


def when_loop_yields(callback: Callable[[], None]) -> bool:
    """Run ``callback()`` on this thread's event loop after the callbacks ready now.

    Only inside :func:`never_wait` on a running event loop (code there cannot block, so
    nothing on this thread waits for ``callback`` before the loop runs it).

    Returns:
        Whether ``callback`` was scheduled; False (nothing done) anywhere else, where the
        caller runs it itself.
    """
    if not _ON_EVENT_LOOP.get():
        return False
    # Imported here: a Lambda cold start and the node side never need asyncio.
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # Marked, but not on a running loop (a test, a script).
        return False
    loop.call_soon(callback)
    return True
