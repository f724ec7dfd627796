"""Shared boto3 plumbing for the AWS adapters (``backends.acmpca``, ``store.dynamodb``, KMS).

Nothing here imports boto3 or botocore at module level: the adapters are importable (and
type-checkable) without the ``aws`` extra, and a Lambda cold start only pays for botocore
when an AWS adapter is actually built. The core never imports this module.
"""

from __future__ import annotations

import functools
import weakref
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from mypy_boto3_acm_pca import ACMPCAClient
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = [
    "THROTTLING_CODES",
    "botocore_errors",
    "close_connections",
    "error_code",
    "error_message",
    "is_transient",
    "make_client",
]

# Error codes that mean "slow down" rather than "this request is wrong". AWS services do
# not agree on one spelling; these are the ones botocore's own retry handler knows.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
_TRANSIENT_CODES = THROTTLING_CODES | {
    "InternalFailure",
    "InternalServerError",
    "InternalServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
}


@overload
def make_client(
    service: Literal["acm-pca"],
    *,
    region: str | None,
    max_attempts: int = ...,
    endpoint_url: str | None = ...,
) -> ACMPCAClient: ...


@overload
def make_client(
    service: Literal["dynamodb"],
    *,
    region: str | None,
    max_attempts: int = ...,
    endpoint_url: str | None = ...,
) -> DynamoDBClient: ...


@overload
def make_client(
    service: Literal["kms"],
    *,
    region: str | None,
    max_attempts: int = ...,
    endpoint_url: str | None = ...,
) -> Any: ...


def make_client(
    service: Literal["acm-pca", "dynamodb", "kms"],
    *,
    region: str | None,
    max_attempts: int = 3,
    endpoint_url: str | None = None,
) -> Any:
    """Build a boto3 client with short timeouts, for ``bootstrap`` to inject into an adapter.

    Args:
        service: ``acm-pca``, ``dynamodb`` or ``kms``.
        region: The AWS region, or None for the SDK's default chain (``AWS_REGION``).
        max_attempts: botocore's own attempts per call (1 = no SDK retries). The ACM PCA
            backend retries by itself, under one deadline, so it asks for 1.
        endpoint_url: A non-AWS endpoint (moto, LocalStack), for tests.
    """
    from botocore.config import Config  # Lazy: see the module docstring.

    config = Config(
        connect_timeout=2,
        read_timeout=5,
        # total_max_attempts counts the first attempt; botocore's max_attempts would not.
        retries={"mode": "standard", "total_max_attempts": max_attempts},
    )
    client = _session().create_client(
        service, region_name=region, endpoint_url=endpoint_url, config=config
    )
    _MADE.add(client)
    return client


# Every client made, for close_connections (weakly: a client nobody holds is gone).
_MADE: weakref.WeakSet[Any] = weakref.WeakSet()


def close_connections() -> int:
    """Close the pooled HTTPS connections of every client made here; return how many clients.

    The clients stay usable: their next call opens a new connection. For a process that
    is restored from a copy (Lambda SnapStart), whose old sockets lead nowhere.
    """
    closed = 0
    for client in list(_MADE):
        # botocore keeps the connection pool on the client's endpoint; there is no public
        # way to reach it, and a client without one (another SDK version) is skipped.
        session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        close = getattr(session, "close", None)
        if callable(close):
            close()
            closed += 1
    return closed


@functools.cache
def _session() -> Any:
    # botocore's session, not boto3's: a client is all nodecert needs, and importing boto3
    # (its resources, s3transfer) costs a Lambda cold start tens of milliseconds.
    import botocore.session

    return botocore.session.get_session()


def botocore_errors() -> tuple[type[Exception], ...]:
    """The botocore exception bases, for ``except botocore_errors() as exc`` clauses."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore error (``ThrottlingException``), or its class name.

    The code is an identifier chosen by AWS; it is cut to 64 characters of ``[A-Za-z0-9.]``
    so that it is safe to put into a public error message.
    """
    response = getattr(exc, "response", None)
    code: object = None
    if isinstance(response, dict):
        error = response.get("Error")
        if isinstance(error, dict):
            code = error.get("Code")
    if not isinstance(code, str) or not code:
        code = type(exc).__name__
    return "".join(c for c in code if c.isalnum() or c == ".")[:64] or "UnknownError"


def error_message(exc: BaseException) -> str:
    """The service's message of a botocore error, for logs (never for callers)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error")
        if isinstance(error, dict) and isinstance(error.get("Message"), str):
            return str(error["Message"])[:500]
    return str(exc)[:500]


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ``ClientError``, or None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        metadata = response.get("ResponseMetadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("HTTPStatusCode"), int):
            return int(metadata["HTTPStatusCode"])
    return None


def is_transient(exc: BaseException) -> bool:
    """True for errors that a later retry may cure: throttling, 5xx, connection trouble."""
    from botocore.exceptions import ConnectionError as BotocoreConnectionError
    from botocore.exceptions import HTTPClientError

    if isinstance(exc, BotocoreConnectionError | HTTPClientError):
        return True
    status = http_status(exc)
    return error_code(exc) in _TRANSIENT_CODES or (status is not None and status >= 500)
