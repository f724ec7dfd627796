"""nodecert: per-node mutual-TLS certificates on demand.

The public API is re-exported here, each name loaded on first use; everything else is an
implementation detail: the errors (every class of the wire-error table, so a client's
caller can catch whatever it raises), :class:`Identity`, the HTTP client
(``nodecert.Client``) and, in their own modules, the node-side check (``nodecert.verify``)
and the test fakes (``nodecert.testing``).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nodecert.client import Client
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


# Where each public name is defined. They are loaded on first use (PEP 562), not when the
# package is: importing any nodecert module runs this file first, and a Lambda function's
# handler module pauses the cyclic collector for its init phase only once its own first
# line runs (nodecert.aws.handler); ``import nodecert.verify`` on a node stays small too.
_HOMES = {
    "AccessDeniedError": "nodecert.core.decision",
    "Client": "nodecert.client",
    "Identity": "nodecert.core.identity",
} | dict.fromkeys(
    (name for name in __all__ if name not in ("AccessDeniedError", "Client", "Identity")),
    "nodecert.core.errors",
)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'nodecert' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # Once: later lookups find it without this function.
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
