"""Shared by the DynamoDB adapters of ``nodecert.store``: table schemas and error translation.

Not a public module: ``nodecert.store.dynamodb.store`` re-exports :func:`table_definitions` and
:func:`create_tables`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from nodecert.core.errors import StoreUnavailableError
from nodecert.support.awsclients import THROTTLING_CODES, botocore_errors, error_code, error_message

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import CreateTableInputTypeDef

__all__ = [
    "BY_NODE",
    "BY_TIME",
    "BY_USER",
    "LIMITS_TTL_ATTRIBUTE",
    "ConditionFailedError",
    "create_tables",
    "dynamodb_call",
    "pages",
    "table_definitions",
]

BY_USER = "byUser"
BY_NODE = "byNode"
BY_TIME = "byTime"
"""The outbox table's local secondary index: a queue's items in the order they were queued.
A local index, not a global one: only a local index can be read with ``ConsistentRead``."""
LIMITS_TTL_ATTRIBUTE = "expiresAt"
"""The limits table's TTL attribute: epoch seconds after which DynamoDB may delete an item."""

_log = logging.getLogger("nodecert.store.dynamodb")
_T = TypeVar("_T")
_CONFIGURATION_CODES = {
    "ResourceNotFoundException": "the table does not exist; check NODECERT_DYNAMODB_*_TABLE",
    "AccessDeniedException": "access denied; check the function's IAM role (dynamodb:*)",
    "UnrecognizedClientException": "the AWS credentials are not valid",
    "ValidationException": "the table does not have the expected keys or indexes",
}


def table_definitions(
    *,
    nodes_table: str,
    certificates_table: str,
    limits_table: str | None = None,
    outbox_table: str | None = None,
) -> list[CreateTableInputTypeDef]:
    """The ``CreateTable`` requests (on-demand), as the SAM template has them.

    The limits table is included when ``limits_table`` is given (its TTL is not part of
    ``CreateTable``: see :func:`create_tables`), the outbox table when ``outbox_table`` is:
    partition key ``queue``, sort key ``id``, and the local index :data:`BY_TIME` on
    ``position`` (``nodecert.store.dynamodb.outbox``).
    """

    def by(name: str, key: str, sort: str) -> Any:
        return {
            "IndexName": name,
            "KeySchema": [
                {"AttributeName": key, "KeyType": "HASH"},
                {"AttributeName": sort, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }

    definitions: list[CreateTableInputTypeDef] = [
        {
            "TableName": nodes_table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "nodeId", "AttributeType": "S"},
                {"AttributeName": "userId", "AttributeType": "S"},
            ],
            "KeySchema": [{"AttributeName": "nodeId", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [by(BY_USER, "userId", "nodeId")],
        },
        {
            "TableName": certificates_table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "serial", "AttributeType": "S"},
                {"AttributeName": "userId", "AttributeType": "S"},
                {"AttributeName": "nodeId", "AttributeType": "S"},
                {"AttributeName": "createdAt", "AttributeType": "S"},
            ],
            "KeySchema": [{"AttributeName": "serial", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [
                by(BY_USER, "userId", "createdAt"),
                by(BY_NODE, "nodeId", "createdAt"),
            ],
        },
    ]
    if limits_table is not None:
        definitions.append(
            {
                "TableName": limits_table,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "key", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "key", "KeyType": "HASH"}],
            }
        )
    if outbox_table is not None:
        definitions.append(
            {
                "TableName": outbox_table,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "queue", "AttributeType": "S"},
                    {"AttributeName": "id", "AttributeType": "S"},
                    {"AttributeName": "position", "AttributeType": "S"},
                ],
                "KeySchema": [
                    {"AttributeName": "queue", "KeyType": "HASH"},
                    {"AttributeName": "id", "KeyType": "RANGE"},
                ],
                "LocalSecondaryIndexes": [by(BY_TIME, "queue", "position")],
            }
        )
    return definitions


def create_tables(
    client: DynamoDBClient,
    *,
    nodes_table: str,
    certificates_table: str,
    limits_table: str | None = None,
    outbox_table: str | None = None,
) -> None:
    """Create the tables (and the limits table's TTL) and wait until they are ACTIVE.

    For tests and local setups; a deployment gets them from ``deploy/template.yaml``.
    """
    for definition in table_definitions(
        nodes_table=nodes_table,
        certificates_table=certificates_table,
        limits_table=limits_table,
        outbox_table=outbox_table,
    ):
        client.create_table(**definition)
        client.get_waiter("table_exists").wait(
            TableName=definition["TableName"], WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
    if limits_table is not None:
        client.update_time_to_live(
            TableName=limits_table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": LIMITS_TTL_ATTRIBUTE},
        )


def pages(
    request: Callable[[dict[str, Any]], Mapping[str, Any]],
) -> Iterator[Mapping[str, Any]]:
    """Every response of a paged ``Query`` or ``Scan``, read lazily.

    ``request(start)`` makes one call from ``start`` (empty for the first page, then
    ``{"ExclusiveStartKey": ...}``); each call goes through :func:`dynamodb_call`.

    Raises:
        StoreUnavailableError: as :func:`dynamodb_call`.
    """
    start: dict[str, Any] = {}
    while True:
        response = dynamodb_call(lambda start=start: request(start))  # type: ignore[misc]
        yield response
        last = response.get("LastEvaluatedKey")
        if not last:
            return
        start = {"ExclusiveStartKey": last}


def dynamodb_call(call: Callable[[], _T], *, conflict: bool = False) -> _T:
    """Run one DynamoDB call; botocore errors become ``StoreUnavailableError``.

    Shared by the adapters in ``nodecert.store`` (not part of the public API).

    Args:
        call: The call.
        conflict: Raise :class:`ConditionFailedError` for ``ConditionalCheckFailedException``
            (a conditional write whose condition did not hold) instead of translating it.

    Raises:
        ConditionFailedError: see ``conflict``; the botocore error is its ``__cause__``.
        StoreUnavailableError: any other botocore error (``retry_after`` 60 for a
            configuration problem, 1 for throttling and outages).
    """
    try:
        return call()
    except botocore_errors() as exc:
        code = error_code(exc)
        if conflict and code == "ConditionalCheckFailedException":
            raise ConditionFailedError from exc
        if conflict and code == "TransactionCanceledException" and _condition_failed(exc):
            raise ConditionFailedError from exc
        _log.warning("dynamodb: %s: %s", code, error_message(exc))
        why = _CONFIGURATION_CODES.get(code)
        if why is not None:
            raise StoreUnavailableError(f"store: DynamoDB: {why} ({code})", retry_after=60) from exc
        busy = "throttled" if code in THROTTLING_CODES else "unavailable"
        raise StoreUnavailableError(f"store: DynamoDB is {busy} ({code})", retry_after=1) from exc


def _condition_failed(exc: BaseException) -> bool:
    # A cancelled transaction names, per item, why: "ConditionalCheckFailed" is ours to
    # report as a conflict; "TransactionConflict" (another transaction on the item) and
    # throttling are transient.
    response = getattr(exc, "response", None)
    reasons = response.get("CancellationReasons", []) if isinstance(response, dict) else []
    if not reasons:
        # Some clients only put the reasons in the message.
        return "ConditionalCheckFailed" in str(exc)
    return any(isinstance(r, dict) and r.get("Code") == "ConditionalCheckFailed" for r in reasons)


class ConditionFailedError(Exception):
    """A conditional write's condition did not hold."""
