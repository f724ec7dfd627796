"""The one exception tree of nodecert.

Every error the service can show a caller is a :class:`NodecertError` with a stable
``code`` (part of the wire contract) and a public-safe ``detail``. Its HTTP status and what
its problem document carries are in one table, :data:`nodecert.core.problems.WIRE_ERRORS`,
which the service renders from and the client rebuilds errors from. The tree below is
drawn from that table (class, status, code, summary; a test checks it), with
:class:`~nodecert.core.decision.AccessDeniedError` from :mod:`nodecert.core.decision`::

    NodecertError                      500  internal_error              unexpected; nothing done
    ├── InvalidRequestError            400  invalid_request             bad input
    │   ├── InvalidIdentifierError     400  invalid_identifier          id not [A-Za-z0-9._-]{1,64}
    │   ├── CSRError                   400  invalid_csr                 CSR malformed, forged, weak
    │   ├── IdempotencyKeyReusedError  400  idempotency_key_reused      Idempotency-Key reused
    │   ├── ConflictingInputError      400  conflicting_input           body and proxy disagree
    │   └── MalformedRequestError      400  malformed_request           refused by the HTTP parser
    ├── AuthenticationError            401  unauthenticated             no valid token
    ├── AuthorizationError             403  forbidden                   authenticated, not allowed
    │   └── AccessDeniedError          403  access_denied               client certificate refused
    ├── NotFoundError                  404  not_found                   no such certificate or node
    ├── MethodNotAllowedError          405  method_not_allowed          not this method here
    ├── RequestTimeoutError            408  request_timeout             request came too slowly
    ├── ConflictError                  409  conflict                    clashes with current state
    │   ├── IdempotentReplayError      409  idempotent_replay           request already made
    │   └── AlreadyRenewedError        409  already_renewed             renewed twice (stolen key?)
    ├── PayloadTooLargeError           413  payload_too_large           body over the size limit
    ├── QuotaExceededError             429  quota_exceeded              rate or count limit reached
    ├── HeadersTooLargeError           431  headers_too_large           request head too large
    ├── ConfigurationError             500  configuration_error         service mis-configured
    ├── UnsupportedTransferCodingError 501  unsupported_transfer_coding a coding other than chunked
    ├── BackendUnavailableError        503  ca_unavailable              CA cannot answer now
    │   └── StoreUnavailableError      503  store_unavailable           ledger cannot answer now
    ├── OverloadedError                503  overloaded                  too many connections
    └── HostUnavailableError           503  unavailable                 machine refused a resource

The client adds errors of its own that never cross the wire
(:class:`nodecert.client.ServiceUnreachableError`, ``UnexpectedReplyError``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Self

__all__ = [
    "AlreadyRenewedError",
    "AuthenticationError",
    "AuthorizationError",
    "BackendUnavailableError",
    "CSRError",
    "ConfigurationError",
    "ConflictError",
    "ConflictingInputError",
    "HeadersTooLargeError",
    "HostUnavailableError",
    "IdempotencyKeyReusedError",
    "IdempotentReplayError",
    "InvalidIdentifierError",
    "InvalidRequestError",
    "MalformedRequestError",
    "MethodNotAllowedError",
    "NodecertError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "RequestTimeoutError",
    "StoreUnavailableError",
    "UnsupportedTransferCodingError",
]

# A serial number as the API writes it: lower-case hex, at most 20 octets (RFC 5280).
_SERIAL = re.compile(r"[0-9a-f]{1,40}")


class NodecertError(Exception):
    """Root of every nodecert error.

    Args:
        detail: What failed and why, safe to show to the caller. It must never contain a
            token, a private key or any other secret.
        retry_after: Seconds after which a retry may succeed, for transient errors.
    """

    code = "internal_error"
    title = "Internal error"

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after

    def wire_fields(self) -> dict[str, str]:
        """What this error's problem document carries besides its detail, by wire name.

        Only the members and headers that the class's row of the wire-error table
        (:data:`nodecert.core.problems.WIRE_ERRORS`) names are sent; ``Retry-After`` comes
        from :attr:`retry_after`.
        """
        return {}

    @classmethod
    def from_wire(cls, detail: str, fields: Mapping[str, str], *, retry_after: int | None) -> Self:
        """The error a problem document stands for: the client's side of :meth:`wire_fields`.

        Args:
            detail: The document's ``detail``, one bounded line.
            fields: The members and headers its row names that came, each one bounded line.
            retry_after: The reply's ``Retry-After``, parsed.
        """
        return cls(detail, retry_after=retry_after)


class InvalidRequestError(NodecertError):
    """The request is malformed or asks for something the policy does not allow."""

    code = "invalid_request"
    title = "Invalid request"


class InvalidIdentifierError(InvalidRequestError):
    """A userId, nodeId or serial number is not in the allowed form."""

    code = "invalid_identifier"
    title = "Invalid identifier"


class CSRError(InvalidRequestError):
    """A client-supplied CSR is malformed, has a bad signature or a weak key."""

    code = "invalid_csr"
    title = "Invalid certificate signing request"


class IdempotencyKeyReusedError(InvalidRequestError):
    """An ``Idempotency-Key`` already used for a different request."""

    code = "idempotency_key_reused"
    title = "Idempotency key reused"


class ConflictingInputError(InvalidRequestError):
    """Two sources of the same input disagree, for example a body against proxy headers."""

    code = "conflicting_input"
    title = "Conflicting input"


class PayloadTooLargeError(NodecertError):
    """The request body is larger than the configured limit."""

    code = "payload_too_large"
    title = "Payload too large"


class AuthenticationError(NodecertError):
    """The caller's credential is missing, malformed, forged, expired or not for us."""

    code = "unauthenticated"
    title = "Authentication failed"


class AuthorizationError(NodecertError):
    """The caller is authenticated but may not do this (for example: not their node)."""

    code = "forbidden"
    title = "Forbidden"


class NotFoundError(NodecertError):
    """The named certificate or node does not exist (or is not visible to the caller)."""

    code = "not_found"
    title = "Not found"


class ConflictError(NodecertError):
    """The change conflicts with the current state."""

    code = "conflict"
    title = "Conflict"


class IdempotentReplayError(ConflictError):
    """The request of this ``Idempotency-Key`` was already made; the CA is not asked again.

    Args:
        detail: As for :class:`NodecertError`.
        serial_number: The certificate that request got, when it is in the ledger.
    """

    code = "idempotent_replay"
    title = "Request already made"

    def __init__(self, detail: str, *, serial_number: str | None = None) -> None:
        super().__init__(detail)
        self.serial_number = serial_number

    def wire_fields(self) -> dict[str, str]:
        """The serial as ``serialNumber``, when the ledger knows it."""
        return {"serialNumber": self.serial_number} if self.serial_number else {}

    @classmethod
    def from_wire(cls, detail: str, fields: Mapping[str, str], *, retry_after: int | None) -> Self:
        """Rebuilt with ``serialNumber`` when it is one (lower-case hex, as the API spells it)."""
        serial = fields.get("serialNumber", "")
        return cls(detail, serial_number=serial if _SERIAL.fullmatch(serial) else None)


class AlreadyRenewedError(ConflictError):
    """The certificate was already renewed once: its successor superseded it.

    A certificate renews at most once. A second renewal means that two parties hold the
    same private key (a copy, or a stolen key), so it is refused and logged.
    """

    code = "already_renewed"
    title = "Certificate already renewed"


class QuotaExceededError(NodecertError):
    """A rate or count limit was reached; ``retry_after`` says when to try again."""

    code = "quota_exceeded"
    title = "Quota exceeded"


class BackendUnavailableError(NodecertError):
    """The certificate authority cannot answer now; nothing was recorded.

    Args:
        detail: As for :class:`NodecertError`.
        retry_after: As for :class:`NodecertError`.
        nothing_issued: True when it is known that the CA accepted nothing (it was never
            reached, it refused outright, or it throttled every attempt), so that asking it
            again cannot make a second certificate; False when the outcome is unknown (a
            request was sent and no answer came back, or it was accepted and is still in
            progress). An ``Idempotency-Key`` is released only in the first case.
    """

    code = "ca_unavailable"
    title = "Certificate authority unavailable"

    def __init__(
        self, detail: str, *, retry_after: int | None = None, nothing_issued: bool = False
    ) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.nothing_issued = nothing_issued


class StoreUnavailableError(BackendUnavailableError):
    """The ledger or node directory cannot answer now."""

    code = "store_unavailable"
    title = "Store unavailable"


class ConfigurationError(NodecertError):
    """The settings are inconsistent or incomplete; the service refuses to start."""

    code = "configuration_error"
    title = "Configuration error"


# The front ends' own errors: the HTTP servers raise them for what reached no use case.


class MalformedRequestError(InvalidRequestError):
    """The HTTP parser refused the request."""

    code = "malformed_request"
    title = "Malformed HTTP request"


class MethodNotAllowedError(NodecertError):
    """The route exists, but not for this method.

    Args:
        detail: As for :class:`NodecertError`.
        allowed: Every method the resource answers (the reply's ``Allow``), when known.
    """

    code = "method_not_allowed"
    title = "Method not allowed"

    def __init__(self, detail: str, *, allowed: Iterable[str] = ()) -> None:
        super().__init__(detail)
        self.allowed = tuple(sorted(set(allowed)))

    def wire_fields(self) -> dict[str, str]:
        """The allowed methods as ``Allow`` (RFC 9110 section 15.5.6), when known."""
        return {"Allow": ", ".join(self.allowed)} if self.allowed else {}

    @classmethod
    def from_wire(cls, detail: str, fields: Mapping[str, str], *, retry_after: int | None) -> Self:
        """Rebuilt with the methods ``Allow`` names (tokens of letters only)."""
        methods = (m.strip() for m in fields.get("Allow", "").split(","))
        return cls(detail, allowed=(m for m in methods if m.isascii() and m.isalpha()))


class RequestTimeoutError(NodecertError):
    """The request head or body did not arrive in time."""

    code = "request_timeout"
    title = "Request timeout"


class HeadersTooLargeError(NodecertError):
    """The request head is over the server's limit."""

    code = "headers_too_large"
    title = "Request header fields too large"


class UnsupportedTransferCodingError(NodecertError):
    """A ``Transfer-Encoding`` other than ``chunked``."""

    code = "unsupported_transfer_coding"
    title = "Transfer coding not implemented"


class OverloadedError(NodecertError):
    """The server has too many connections to take this request."""

    code = "overloaded"
    title = "Service overloaded"


class HostUnavailableError(NodecertError):
    """The machine refused a resource (a full disk, no file descriptors left): retry later."""

    code = "unavailable"
    title = "Service unavailable"
