"""Single-use tokens and rate buckets in DynamoDB (``ReplayGuard`` and ``RateLimiter``).

One table (``LimitsTable`` in ``deploy/template.yaml``, or :func:`create_tables` with
``limits_table``): partition key ``key`` (S) and a TTL on ``expiresAt`` (N, epoch seconds),
so DynamoDB deletes stale items by itself. Keys are prefixed by kind (``once#``,
``bucket#``), so both kinds share the table and never collide.

TTL deletion is lazy (AWS deletes expired items "typically within a few days"), so an item
past its ``expiresAt`` may still be read; both abilities treat such an item as gone. See
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html.

These abilities live in a class of their own, not on ``DynamoDBStore``: the abilities are
``runtime_checkable`` Protocols, decided by method presence, so a store holding them
without a table would claim abilities that it cannot honour. ``bootstrap`` builds this next
to the store, over the same client.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from nodecert.core.errors import ConflictError
from nodecert.store.dynamodb.tables import (
    LIMITS_TTL_ATTRIBUTE,
    ConditionFailedError,
    dynamodb_call,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = ["DynamoDBLimits"]

_ONCE = "once#"
_BUCKET = "bucket#"
# An idle bucket is deleted this long after it is full again; a missing bucket reads as
# full, so deleting it then changes nothing.
_IDLE_MARGIN_S = 60


class DynamoDBLimits:
    """Single-use token ids and token buckets in one DynamoDB table.

    Implements ``nodecert.core.ports.ReplayGuard`` and ``nodecert.core.ports.RateLimiter``.

    Args:
        client: A boto3 ``dynamodb`` client (the store's).
        table: The limits table name.
    """

    def __init__(self, client: DynamoDBClient, *, table: str) -> None:
        self._client = client
        self._table = table

    # ReplayGuard

    def use_once(self, key: str, *, expires_at: datetime, now: datetime | None = None) -> None:
        """Record ``key`` as used until ``expires_at``, with one conditional ``PutItem``.

        An item that has expired but that TTL has not deleted yet is overwritten.

        Raises:
            ConflictError: ``key`` is already recorded and has not expired.
            StoreUnavailableError: DynamoDB cannot answer now.
        """
        at = (now or datetime.now(UTC)).timestamp()
        try:
            dynamodb_call(
                lambda: self._client.put_item(
                    TableName=self._table,
                    Item={
                        "key": {"S": _ONCE + key},
                        LIMITS_TTL_ATTRIBUTE: {"N": str(math.ceil(expires_at.timestamp()))},
                    },
                    # "key" is a DynamoDB reserved word.
                    ConditionExpression="attribute_not_exists(#k) OR #expires < :now",
                    ExpressionAttributeNames={"#k": "key", "#expires": LIMITS_TTL_ATTRIBUTE},
                    ExpressionAttributeValues={":now": {"N": str(math.floor(at))}},
                ),
                conflict=True,
            )
        except ConditionFailedError as exc:
            raise ConflictError("token: already used") from exc.__cause__

    def release(self, key: str, *, expires_at: datetime) -> None:
        """Forget ``key`` if it is recorded until ``expires_at``: one conditional ``DeleteItem``.

        Raises:
            StoreUnavailableError: DynamoDB cannot answer now.
        """
        try:
            dynamodb_call(
                lambda: self._client.delete_item(
                    TableName=self._table,
                    Key={"key": {"S": _ONCE + key}},
                    # Only the caller's own record: another one has another expiry.
                    ConditionExpression="#expires = :expires",
                    ExpressionAttributeNames={"#expires": LIMITS_TTL_ATTRIBUTE},
                    ExpressionAttributeValues={
                        ":expires": {"N": str(math.ceil(expires_at.timestamp()))}
                    },
                ),
                conflict=True,
            )
        except ConditionFailedError:
            return  # Gone already, or someone else's: nothing of ours to forget.

    # RateLimiter

    def take_token(self, key: str, *, capacity: float, refill_per_s: float, now: datetime) -> float:
        """Take one token from bucket ``key``; 0.0 when granted, else seconds to wait.

        The bucket is kept as the time at which it will be full again (``fullAt``; GCRA,
        the "generic cell rate algorithm", ITU-T I.371), which turns the refill and the take
        into conditional updates that DynamoDB applies atomically: no read first, no lost
        races, no retries, whatever the number of concurrent callers.

        - ``fullAt <= now`` (or no bucket): the bucket is full; ``fullAt = now + 1/rate``.
        - ``now < fullAt <= now + (capacity - 1)/rate``: at least one token is left;
          ``fullAt += 1/rate``.
        - otherwise the bucket is empty: wait ``fullAt - now - (capacity - 1)/rate``.

        These are exactly the numbers of a token bucket that holds
        ``min(capacity, tokens + elapsed * rate)`` (the SQLite store's).

        Raises:
            ValueError: ``refill_per_s`` is not positive (a bucket that never refills is
                not a rate).
            StoreUnavailableError: DynamoDB cannot answer now.
        """
        if refill_per_s <= 0:
            raise ValueError("refill_per_s: must be > 0")
        interval = 1.0 / refill_per_s
        at = now.timestamp()
        limit = at + (capacity - 1.0) * interval
        # Deleted once it is surely full again (a missing bucket reads as full).
        expires: dict[str, AttributeValueTypeDef] = {
            ":expires": {"N": str(math.ceil(at + capacity * interval) + _IDLE_MARGIN_S)}
        }
        before = self._update(
            key,
            update="SET fullAt = :next, #expires = :expires",
            condition="attribute_not_exists(fullAt) OR fullAt <= :now",
            values={":next": {"N": _number(at + interval)}, ":now": {"N": _number(at)}, **expires},
        )
        if before is None:
            return 0.0
        # fullAt > now from here on, and it only ever grows: a bucket seen empty stays
        # empty, and if the second update fails, the bucket is empty.
        if not _is_empty(before, limit):
            before = self._update(
                key,
                update="SET fullAt = fullAt + :interval, #expires = :expires",
                condition="fullAt > :now AND fullAt <= :limit",
                values={
                    ":interval": {"N": _number(interval)},
                    ":now": {"N": _number(at)},
                    ":limit": {"N": _number(limit)},
                    **expires,
                },
            )
            if before is None:
                return 0.0
        item = before or self._get(key)
        if item is None or "fullAt" not in item:
            # Deleted by TTL between the two writes: only with a clock over a minute slow.
            return interval
        return float(item["fullAt"]["N"]) - limit

    def _update(
        self,
        key: str,
        *,
        update: str,
        condition: str,
        values: dict[str, AttributeValueTypeDef],
    ) -> dict[str, Any] | None:
        """Apply one conditional update: None when done, else the item as it was (or {})."""
        try:
            dynamodb_call(
                lambda: self._client.update_item(
                    TableName=self._table,
                    Key={"key": {"S": _BUCKET + key}},
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#expires": LIMITS_TTL_ATTRIBUTE},
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ),
                conflict=True,
            )
        except ConditionFailedError as exc:
            response = getattr(exc.__cause__, "response", {})
            item = response.get("Item") if isinstance(response, dict) else None
            return item if isinstance(item, dict) else {}
        return None

    def _get(self, key: str) -> dict[str, Any] | None:
        response = dynamodb_call(
            lambda: self._client.get_item(
                TableName=self._table, Key={"key": {"S": _BUCKET + key}}, ConsistentRead=True
            )
        )
        return response.get("Item")


def _is_empty(item: dict[str, Any], limit: float) -> bool:
    return "fullAt" in item and float(item["fullAt"]["N"]) > limit


def _number(value: float) -> str:
    # DynamoDB numbers are decimal strings; fixed-point, so that no exponent is ever sent.
    return format(Decimal(repr(value)), "f")
