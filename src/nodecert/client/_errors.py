"""Problem documents back into the project's own error classes.

The service answers every failure with an RFC 9457 problem document carrying a stable
``code``. The client rebuilds the error with the core's wire-error table
(:func:`nodecert.core.problems.parse`), the table the service renders from, through the
class's own constructor: a refusal carries the same fields here as on the service
(``decision.reason`` of an :class:`~nodecert.core.decision.AccessDeniedError`,
``serial_number`` of an :class:`~nodecert.core.errors.IdempotentReplayError`,
``retry_after``). A code the table does not know keeps its code on the class of the
reply's status. Failures to get any answer are :class:`ServiceUnreachableError`.
"""

from __future__ import annotations

from nodecert.core import problems
from nodecert.core.errors import BackendUnavailableError, NodecertError

__all__ = ["ServiceUnreachableError", "error_from_response", "http_status_of"]


class ServiceUnreachableError(BackendUnavailableError):
    """No answer from the service: refused, unresolvable, timed out, or TLS failed."""

    code = "service_unreachable"
    title = "Service unreachable"


def error_from_response(status: int, headers: dict[str, str], body: bytes) -> NodecertError:
    """The error a non-2xx response stands for (never raises, whatever the body).

    The instance carries the problem's ``detail`` (or a line naming the status), its
    ``code``, the fields its row of the table names, and ``retry_after`` from
    ``Retry-After``; :func:`http_status_of` gives the status.
    """
    error = problems.parse(status, headers, body)
    error.http_status = status  # type: ignore[attr-defined]
    return error


def http_status_of(error: BaseException) -> int | None:
    """The HTTP status a client error came with (None when no response arrived)."""
    status = getattr(error, "http_status", None)
    return status if isinstance(status, int) else None
