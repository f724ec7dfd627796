"""A worker that stops (SIGTERM, a SIGHUP's rolling restart) answers what it accepted.

uvicorn's graceful shutdown lets requests in flight finish, but closes at once every
connection that has no request yet. A connection the worker accepted a moment before its
shutdown began usually has its first request on the way: closing it answered that request
with nothing ("Remote end closed connection without response"), which a client cannot tell
from a crash and does not retry when the request is a POST. Such a fresh connection gets
``shutdown_grace_s`` for its request to begin; the request is then answered, with
``Connection: close``. A kept-alive connection that has been answered before is closed at
once, as uvicorn does: RFC 9112 section 9.3.1 leaves its retry to the client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["DrainingHttpToolsProtocol"]


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering a fresh connection's first request during a
    graceful shutdown (the base of ``server.serve.BoundedHttpToolsProtocol``)."""

    shutdown_grace_s = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._answered_before = False
        self._draining = False
        self._drain_deadline: asyncio.TimerHandle | None = None

    def on_headers_complete(self) -> None:
        """A request's head is in; during a shutdown, its answer closes the connection."""
        super().on_headers_complete()
        self._answered_before = True
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def shutdown(self) -> None:
        """Called by uvicorn's graceful shutdown: give a fresh connection its request."""
        if self.cycle is None and not self._answered_before and not self.transport.is_closing():
            self._draining = True
            self._drain_deadline = self.loop.call_later(self.shutdown_grace_s, self._give_up)
            return
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the shutdown's deadline with the connection."""
        if self._drain_deadline is not None:
            self._drain_deadline.cancel()
            self._drain_deadline = None
        super().connection_lost(exc)

    def _give_up(self) -> None:
        self._drain_deadline = None
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()
