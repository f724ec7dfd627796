"""nodecert: per-node mutual-TLS certificates on demand.

The public API is re-exported here; everything else is an implementation detail.
"""

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

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "BackendUnavailableError",
    "CSRError",
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
