"""The one exception tree of nodecert.

Every error the service can show a caller is a :class:`NodecertError` with a stable
``code`` (part of the wire contract) and a public-safe ``detail``. The core knows no HTTP
status codes: the HTTP and Lambda adapters map classes to statuses in one table.

::

    NodecertError
    ├── InvalidRequestError          bad input (400)
    │   ├── InvalidIdentifierError   an id outside [A-Za-z0-9._-]{1,128}
    │   ├── CSRError                 a client CSR that is malformed, forged or weak
    │   └── IdempotencyKeyReusedError  an Idempotency-Key used for another request
    │   └── ConflictingInputError    two sources of one input disagree (body vs. proxy)
    ├── PayloadTooLargeError         body over the size limit (413)
    ├── AuthenticationError          missing, malformed, forged or expired token (401)
    ├── AuthorizationError           authenticated, but not allowed (403)
    ├── NotFoundError                no such certificate or node (404)
    ├── ConflictError                the change clashes with current state (409)
    │   └── IdempotentReplayError    an Idempotency-Key's request was already made
    │   └── AlreadyRenewedError      a certificate renewed a second time (a stolen-key signal)
    ├── QuotaExceededError           rate or count limit reached (429, Retry-After)
    ├── BackendUnavailableError      CA or store cannot answer now (503, Retry-After)
    │   └── StoreUnavailableError    the ledger / node directory cannot answer now
    └── ConfigurationError           the service is mis-configured (refuses to start)
"""

from __future__ import annotations

__all__ = [
    "AlreadyRenewedError",
    "AuthenticationError",
    "AuthorizationError",
    "BackendUnavailableError",
    "CSRError",
    "ConfigurationError",
    "ConflictError",
    "ConflictingInputError",
    "IdempotencyKeyReusedError",
    "IdempotentReplayError",
    "InvalidIdentifierError",
    "InvalidRequestError",
    "NodecertError",
    "NotFoundError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "StoreUnavailableError",
]


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
