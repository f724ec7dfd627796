"""nodecert: per-node mutual-TLS certificates on demand.

The public API is re-exported here; everything else is an implementation detail: the
errors, :class:`Identity`, the HTTP client (``nodecert.Client``, loaded on first use so that
``import nodecert.verify`` on a node stays small) and, in their own modules, the node-side
check (``nodecert.verify``) and the test fakes (``nodecert.testing``).
"""

from typing import TYPE_CHECKING, Any

from nodecert.core.errors import (
    AuthenticationError,
    AuthorizationError,
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    CSRError,
    InvalidIdentifierError,
    InvalidRequestError,
    NodecertError,
    NotFoundError,
    PayloadTooLargeError,
    QuotaExceededError,
    StoreUnavailableError,
)
from nodecert.core.identity import Identity

if TYPE_CHECKING:
    from nodecert.client import Client

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "BackendUnavailableError",
    "CSRError",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "Identity",
    "InvalidIdentifierError",
    "InvalidRequestError",
    "NodecertError",
    "NotFoundError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "StoreUnavailableError",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Client":
        from nodecert.client import Client

        return Client
    raise AttributeError(f"module 'nodecert' has no attribute {name!r}")
