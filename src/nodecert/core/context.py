"""Where the request being answered came from, for the audit trail.

The front end that receives a request names its source once (``http 203.0.113.7``,
``lambda 198.51.100.2``, ``cli``); the use cases read it when they write an audit entry, so
no method signature has to carry it. A context variable, so concurrent requests on one
event loop (and the threads they hand work to) each see their own.
"""

from __future__ import annotations

import contextvars

__all__ = ["bind_source", "current_source"]

_SOURCE: contextvars.ContextVar[str] = contextvars.ContextVar("nodecert_source", default="")


def bind_source(source: str) -> None:
    """Name where the request this context answers came from (printable, at most 100)."""
    _SOURCE.set("".join(c for c in source if c.isprintable())[:100])


def current_source() -> str:
    """The source bound in this context, or ``""``."""
    return _SOURCE.get()
