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

from collections.abc import Callable, Sized
from contextvars import ContextVar

__all__ = [
    "WouldBlockError",
    "count_requests_in",
    "must_not_wait",
    "never_wait",
    "when_loop_yields",
]

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


# The HTTP server's live requests on this thread's event loop (uvicorn's set of request
# tasks, received and not yet answered), once it has registered them.
_requests: Sized | None = None


def count_requests_in(requests: Sized | None) -> None:
    """Let :func:`when_loop_yields` know how many requests the event loop holds.

    The HTTP server registers its collection of live requests (one per worker process);
    None forgets it.
    """
    global _requests  # One server, one event loop per process.
    _requests = requests


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
    if _requests is not None and len(_requests) <= 1:
        # The request running now is the only one its server holds: nothing the loop
        # runs next can share what the callback starts, so it is not held back.
        return False
    # Imported here: a Lambda cold start and the node side never need asyncio.
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # Marked, but not on a running loop (a test, a script).
        return False
    loop.call_soon(callback)
    return True
