"""Facts about the request being answered that no method signature carries.

- Where it came from, for the audit trail: the front end that receives a request names its
  source once (``http 203.0.113.7``, ``lambda 198.51.100.2``, ``cli``); the use cases read
  it when they write an audit entry.
- What an issuance request asked for, for the metrics: the front end opens a
  :class:`IssuanceNote` and the use case, which parsed the request, fills in its key
  (``csr``, or the key type to make), so the front end labels the issuance without
  parsing the body a second time.

Context variables, so concurrent requests on one event loop (and the threads they hand
work to) each see their own.
"""

from __future__ import annotations

import contextvars

__all__ = ["IssuanceNote", "bind_source", "current_source", "note_issuance", "open_issuance_note"]

_SOURCE: contextvars.ContextVar[str] = contextvars.ContextVar("nodecert_source", default="")


def bind_source(source: str) -> None:
    """Name where the request this context answers came from (printable, at most 100)."""
    if not source.isprintable():  # Rare: the usual source is kept as it is.
        source = "".join(c for c in source if c.isprintable())
    _SOURCE.set(source[:100])


def current_source() -> str:
    """The source bound in this context, or ``""``."""
    return _SOURCE.get()


class IssuanceNote:
    """What an issuance request asked for, filled in by the use case that parsed it.

    Attributes:
        key: ``csr`` for a client's CSR, else the key type to make (``ec-p256``…); None
            until a request's key fields were parsed and accepted.
    """

    __slots__ = ("key",)

    def __init__(self) -> None:
        self.key: str | None = None


_NOTE: contextvars.ContextVar[IssuanceNote | None] = contextvars.ContextVar(
    "nodecert_issuance_note", default=None
)


def open_issuance_note() -> IssuanceNote:
    """A blank note for the request this context answers (the use case fills it in).

    One object, shared by reference: the context copies that hand work to a thread
    write into the same note.
    """
    note = IssuanceNote()
    _NOTE.set(note)
    return note


def note_issuance(key: str) -> None:
    """Record the key an issuance request asked for, when a front end opened a note."""
    note = _NOTE.get()
    if note is not None:
        note.key = key
