"""The DynamoDB ledger and node directory (the serverless counterpart of SQLite).

Three tables, created by ``deploy/template.yaml`` (or :func:`create_tables` in tests):

- nodes: partition key ``nodeId``; GSI ``byUser`` (``userId``, ``nodeId``);
- certificates: partition key ``serial``; GSIs ``byUser`` and ``byNode`` (``userId`` or
  ``nodeId``, sorted by ``createdAt``);
- limits: partition key ``key``, TTL on ``expiresAt``: single-use tokens and rate buckets,
  kept by :class:`nodecert.store.dynamodb.limits.DynamoDBLimits`;
- outbox: partition key ``queue``, sort key ``id``, local index ``byTime``: the CA
  revocation queue, kept by :class:`nodecert.store.dynamodb.outbox.DynamoDBOutbox`, and
  the audit trail, one partition per day (:mod:`nodecert.store.dynamodb.audit`).

Times are stored as ISO 8601 UTC strings of fixed width, so that string order is time
order. A serial is never overwritten (``attribute_not_exists``) and revocation is one
conditional update, so two concurrent revocations keep the first time and reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from nodecert.core.errors import ConflictError, NotFoundError
from nodecert.core.values import (
    CertificateQuery,
    CertificateRecord,
    CertificateStatus,
    Commit,
    NodeRecord,
    RevocationReason,
)
from nodecert.store.dynamodb.items import (
    certificate_from_item,
    certificate_item,
    item_time,
    node_from_item,
)
from nodecert.store.dynamodb.tables import (
    BY_NODE,
    BY_USER,
    ConditionFailedError,
    create_tables,
    dynamodb_call,
    table_definitions,
)
from nodecert.store.memory_query import select_rows

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = ["DynamoDBStore", "create_tables", "table_definitions"]

_T = TypeVar("_T")
_MIN_READ = 25


class DynamoDBStore:
    """Ledger and node directory in DynamoDB: ``Ledger``, ``NodeDirectory``.

    Args:
        client: A boto3 ``dynamodb`` client
            (``nodecert.support.awsclients.make_client("dynamodb", ...)`` gives it short
            timeouts; botocore's standard retries cover throttling).
        nodes_table: The nodes table name.
        certificates_table: The certificates table name.
    """

    never_waits = False  # Every write is an API call.

    def __init__(self, client: DynamoDBClient, *, nodes_table: str, certificates_table: str):
        self._client = client
        self.client = client
        self._nodes = nodes_table
        self._certificates = certificates_table

    # NodeDirectory

    def owner_of(self, node_id: str) -> str | None:
        """The owner of ``node_id``, or None."""
        response = self._call(
            lambda: self._client.get_item(
                TableName=self._nodes, Key={"nodeId": {"S": node_id}}, ConsistentRead=True
            )
        )
        item = response.get("Item")
        return None if item is None else item["userId"]["S"]

    def put_node(self, node_id: str, owner: str, *, at: datetime) -> NodeRecord:
        """Create ``node_id`` or re-assign it to ``owner`` (keeping its creation time)."""
        response = self._call(
            lambda: self._client.update_item(
                TableName=self._nodes,
                Key={"nodeId": {"S": node_id}},
                UpdateExpression="SET userId = :owner, createdAt = if_not_exists(createdAt, :at)",
                ExpressionAttributeValues={":owner": {"S": owner}, ":at": {"S": item_time(at)}},
                ReturnValues="ALL_NEW",
            )
        )
        return node_from_item(response["Attributes"])

    def delete_node(self, node_id: str) -> bool:
        """Remove ``node_id``; False when there was no such node."""
        response = self._call(
            lambda: self._client.delete_item(
                TableName=self._nodes, Key={"nodeId": {"S": node_id}}, ReturnValues="ALL_OLD"
            )
        )
        return bool(response.get("Attributes"))

    def list_nodes(self, *, owner: str | None = None) -> list[NodeRecord]:
        """All nodes (or ``owner``'s), by node id."""
        if owner is None:
            items = self._pages(lambda start: self._client.scan(TableName=self._nodes, **start))
        else:
            items = self._pages(
                lambda start: self._client.query(
                    TableName=self._nodes,
                    IndexName=BY_USER,
                    KeyConditionExpression="userId = :owner",
                    ExpressionAttributeValues={":owner": {"S": owner}},
                    **start,
                )
            )
        return sorted((node_from_item(item) for item in items), key=lambda node: node.node_id)

    # Ledger

    def record(self, record: CertificateRecord) -> Commit:
        """Commit a new certificate row before returning (the commit returned is done).

        Raises:
            ConflictError: the serial is already recorded (it is never overwritten).
            StoreUnavailableError: DynamoDB cannot answer now.
        """
        try:
            self._call(
                lambda: self._client.put_item(
                    TableName=self._certificates,
                    Item=certificate_item(record),
                    ConditionExpression="attribute_not_exists(serial)",
                ),
                conflict=True,
            )
        except ConditionFailedError as exc:
            raise ConflictError(f"serial: {record.serial} is already recorded") from exc.__cause__
        return Commit.done()

    def get(self, serial: str) -> CertificateRecord | None:
        """The row for ``serial``, or None."""
        response = self._call(
            lambda: self._client.get_item(
                TableName=self._certificates, Key={"serial": {"S": serial}}, ConsistentRead=True
            )
        )
        item = response.get("Item")
        return None if item is None else certificate_from_item(item)

    def find(
        self, *, user_id: str | None = None, node_id: str | None = None
    ) -> list[CertificateRecord]:
        """Rows of a user and/or a node, newest first."""
        if node_id is not None:
            index, key, value = BY_NODE, "nodeId", node_id
        elif user_id is not None:
            index, key, value = BY_USER, "userId", user_id
        else:
            scanned = self._pages(
                lambda start: self._client.scan(TableName=self._certificates, **start)
            )
            rows = [certificate_from_item(item) for item in scanned]
            return sorted(rows, key=lambda row: row.created_at, reverse=True)
        extra: dict[str, Any] = {}
        values: dict[str, AttributeValueTypeDef] = {":key": {"S": value}}
        if node_id is not None and user_id is not None:
            # A node has few certificates; the user is a filter on the node's page.
            extra["FilterExpression"] = "userId = :user"
            values[":user"] = {"S": user_id}
        items = self._pages(
            lambda start: self._client.query(
                TableName=self._certificates,
                IndexName=index,
                KeyConditionExpression=f"{key} = :key",
                ExpressionAttributeValues=values,
                ScanIndexForward=False,
                **extra,
                **start,
            )
        )
        return [certificate_from_item(item) for item in items]

    def query(self, query: CertificateQuery) -> list[CertificateRecord]:
        """The rows ``query`` asks for.

        For a user or a node, one index is queried newest first, the other filters run in
        DynamoDB and reading stops once the page is full. Without either (an admin's
        listing, the CRL) the table is scanned and the rest done in memory.
        """
        if query.node_id is not None:
            index, key, value = BY_NODE, "nodeId", query.node_id
        elif query.user_id is not None:
            index, key, value = BY_USER, "userId", query.user_id
        else:
            return select_rows(self.find(), query)
        names: dict[str, str] = {}
        values: dict[str, AttributeValueTypeDef] = {":key": {"S": value}}
        filters: list[str] = []
        if query.node_id is not None and query.user_id is not None:
            filters.append("userId = :user")
            values[":user"] = {"S": query.user_id}
        if query.profile is not None:
            filters.append("#profile = :profile")
            names["#profile"] = "profile"
            values[":profile"] = {"S": query.profile.value}
        if query.status is not None and query.now is not None:
            names["#status"] = "status"
            if query.status is CertificateStatus.REVOKED:
                filters.append("#status = :revoked")
                values[":revoked"] = {"S": CertificateStatus.REVOKED.value}
            else:
                values[":now"] = {"S": item_time(query.now)}
                if query.status is CertificateStatus.EXPIRED:
                    filters.append("#status IN (:active, :superseded) AND notAfter <= :now")
                    values[":active"] = {"S": CertificateStatus.ACTIVE.value}
                    values[":superseded"] = {"S": CertificateStatus.SUPERSEDED.value}
                else:
                    filters.append("#status = :wanted AND notAfter > :now")
                    values[":wanted"] = {"S": query.status.value}
        params: dict[str, Any] = {
            "TableName": self._certificates,
            "IndexName": index,
            "KeyConditionExpression": f"{key} = :key",
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if filters:
            params["FilterExpression"] = " AND ".join(f"({f})" for f in filters)
        if names:
            params["ExpressionAttributeNames"] = names
        if query.after is not None:
            last = self.get(query.after)
            if last is None:
                return []
            index_value = last.node_id if key == "nodeId" else last.user_id
            params["ExclusiveStartKey"] = {
                "serial": {"S": last.serial},
                key: {"S": index_value},
                "createdAt": {"S": item_time(last.created_at)},
            }
        rows: list[CertificateRecord] = []
        while query.limit is None or len(rows) < query.limit:
            if query.limit is not None:
                # Limit counts items read before the filter: read a little ahead.
                params["Limit"] = max(query.limit - len(rows), _MIN_READ)
            response = self._call(functools.partial(self._client.query, **params))
            rows.extend(certificate_from_item(item) for item in response.get("Items", []))
            if not response.get("LastEvaluatedKey"):
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return rows if query.limit is None else rows[: query.limit]

    def mark_revoked(
        self, serial: str, *, reason: RevocationReason, at: datetime
    ) -> CertificateRecord:
        """Mark ``serial`` revoked; a second call keeps the first time and reason.

        Raises:
            NotFoundError: no such serial.
            StoreUnavailableError: DynamoDB cannot answer now.
        """
        try:
            response = self._call(
                lambda: self._client.update_item(
                    TableName=self._certificates,
                    Key={"serial": {"S": serial}},
                    UpdateExpression=(
                        "SET #status = :revoked, revokedAt = :at, revocationReason = :why"
                    ),
                    ConditionExpression="attribute_exists(serial) AND #status <> :revoked",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={
                        ":revoked": {"S": CertificateStatus.REVOKED.value},
                        ":at": {"S": item_time(at)},
                        ":why": {"S": reason.value},
                    },
                    ReturnValues="ALL_NEW",
                ),
                conflict=True,
            )
        except ConditionFailedError:
            # Either already revoked (return it as it is) or no such serial.
            current = self.get(serial)
            if current is None:
                raise NotFoundError(f"serial: no certificate {serial}") from None
            return current
        return certificate_from_item(response["Attributes"])

    def record_successor(self, record: CertificateRecord) -> None:
        """Commit ``record`` and supersede ``record.renewed_from``: one DynamoDB transaction.

        The predecessor's update is conditional on its status being ``active``, so of two
        racing renewals exactly one commits.

        Raises:
            ConflictError: the predecessor is not active any more, or the serial exists.
            StoreUnavailableError: DynamoDB cannot answer now.
        """
        predecessor = record.renewed_from or ""
        try:
            self._call(
                lambda: self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self._certificates,
                                "Key": {"serial": {"S": predecessor}},
                                "UpdateExpression": "SET #status = :superseded, supersededBy = :by",
                                "ConditionExpression": "#status = :active",
                                "ExpressionAttributeNames": {"#status": "status"},
                                "ExpressionAttributeValues": {
                                    ":superseded": {"S": CertificateStatus.SUPERSEDED.value},
                                    ":active": {"S": CertificateStatus.ACTIVE.value},
                                    ":by": {"S": record.serial},
                                },
                            }
                        },
                        {
                            "Put": {
                                "TableName": self._certificates,
                                "Item": certificate_item(record),
                                "ConditionExpression": "attribute_not_exists(serial)",
                            }
                        },
                    ]
                ),
                conflict=True,
            )
        except ConditionFailedError as exc:
            raise ConflictError(
                f"renewal: {predecessor} is not active any more, or {record.serial} exists"
            ) from exc.__cause__

    def _pages(self, page: Callable[[dict[str, Any]], Any]) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] = {}
        while True:
            response = self._call(functools.partial(page, start))
            yield from response.get("Items", [])
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            start = {"ExclusiveStartKey": last}

    def _call(self, call: Callable[[], _T], *, conflict: bool = False) -> _T:
        return dynamodb_call(call, conflict=conflict)
