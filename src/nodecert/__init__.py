"""nodecert: per-node mutual-TLS certificates on demand.

The public API is re-exported here; everything else is an implementation detail: the
errors (every class of the wire-error table, so a client's caller can catch whatever it
raises), :class:`Identity`, the HTTP client (``nodecert.Client``, loaded on first use so
that ``import nodecert.verify`` on a node stays small) and, in their own modules, the node-side
check (``nodecert.verify``) and the test fakes (``nodecert.testing``).
"""

from typing import TYPE_CHECKING, Any

from nodecert.core.decision import AccessDeniedError
from nodecert.core.errors import (
    AlreadyRenewedError,
    AuthenticationError,
    AuthorizationError,
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    ConflictingInputError,
    CSRError,
    HeadersTooLargeError,
    HostUnavailableError,
    IdempotencyKeyReusedError,
    IdempotentReplayError,
    InvalidIdentifierError,
    InvalidRequestError,
    MalformedRequestError,
    MethodNotAllowedError,
    NodecertError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    QuotaExceededError,
    RequestTimeoutError,
    StoreUnavailableError,
    UnsupportedTransferCodingError,
)
from nodecert.core.identity import Identity

if TYPE_CHECKING:
    from nodecert.client import Client

__all__ = [
    "AccessDeniedError",
    "AlreadyRenewedError",
    "AuthenticationError",
    "AuthorizationError",
    "BackendUnavailableError",
    "CSRError",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "ConflictingInputError",
    "HeadersTooLargeError",
    "HostUnavailableError",
    "IdempotencyKeyReusedError",
    "IdempotentReplayError",
    "Identity",
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

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Client":
        from nodecert.client import Client

        return Client
    raise AttributeError(f"module 'nodecert' has no attribute {name!r}")
