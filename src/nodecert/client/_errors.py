"""Problem documents back into the project's own error classes.

The service answers every failure with an RFC 9457 problem document carrying a stable
``code``. The client raises the :mod:`nodecert.core.errors` class with that code, found in
a table built from the error classes themselves (so a class added to the tree is known
without touching the client), or, for a code it does not know, the class for the HTTP
status. Failures to get any answer are :class:`ServiceUnreachableError`.
"""

from __future__ import annotations

import json

import nodecert.nodeside.access  # noqa: F401 - registers AccessDeniedError's code.
from nodecert.core.errors import (
    AuthenticationError,
    AuthorizationError,
    BackendUnavailableError,
    ConflictError,
    InvalidRequestError,
    NodecertError,
    NotFoundError,
    PayloadTooLargeError,
    QuotaExceededError,
)

__all__ = ["ServiceUnreachableError", "error_from_response", "http_status_of"]


class ServiceUnreachableError(BackendUnavailableError):
    """No answer from the service: refused, unresolvable, timed out, or TLS failed."""

    code = "service_unreachable"
    title = "Service unreachable"


_BY_STATUS: dict[int, type[NodecertError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: AuthorizationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: QuotaExceededError,
    502: BackendUnavailableError,
    503: BackendUnavailableError,
    504: BackendUnavailableError,
}
_MAX_DETAIL = 500


def _classes_by_code() -> dict[str, type[NodecertError]]:
    table: dict[str, type[NodecertError]] = {}
    pending: list[type[NodecertError]] = [NodecertError]
    while pending:
        cls = pending.pop(0)
        # Breadth first: the most general class wins if two classes share a code.
        table.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return table


def error_from_response(status: int, headers: dict[str, str], body: bytes) -> NodecertError:
    """The error a non-2xx response stands for.

    The instance carries the problem's ``detail`` (or a line naming the status), its
    ``code`` and ``retry_after`` from ``Retry-After``; :func:`http_status_of` gives the status.
    """
    code, detail = _problem(body)
    cls = _classes_by_code().get(code or "") or _BY_STATUS.get(status) or NodecertError
    if cls is NodecertError and status >= 500:
        cls = BackendUnavailableError if status in (502, 503, 504) else NodecertError
    if not detail:
        detail = f"HTTP {status} without a problem document"
    # Some classes take other constructor arguments (AccessDeniedError takes a Decision):
    # the wire only carries the detail, so build every class the same way.
    error = cls.__new__(cls)
    NodecertError.__init__(error, detail, retry_after=_retry_after(headers))
    if code and code != cls.code:
        error.code = code
    error.http_status = status  # type: ignore[attr-defined]
    return error


def http_status_of(error: BaseException) -> int | None:
    """The HTTP status a client error came with (None when no response arrived)."""
    status = getattr(error, "http_status", None)
    return status if isinstance(status, int) else None


def _problem(body: bytes) -> tuple[str | None, str | None]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    code, detail = data.get("code"), data.get("detail")
    code = code if isinstance(code, str) and len(code) <= 64 else None
    # One line, bounded: a hostile or broken server cannot flood a terminal or a log.
    detail = " ".join(detail.split())[:_MAX_DETAIL] if isinstance(detail, str) else None
    return code, detail


def _retry_after(headers: dict[str, str]) -> int | None:
    value = headers.get("retry-after", "").strip()
    # ASCII digits only, and few: str.isdigit() also takes "²", which int() refuses.
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        return None
    return min(int(value), 86_400)
