"""The audit trail in DynamoDB: one partition per day of the outbox table, read by ``Query``.

The outbox table (partition key ``queue``, sort key ``id``) keeps, besides the revocation
queue (:mod:`nodecert.store.dynamodb.outbox`):

- ``queue = "audit#<YYYY-MM-DD>"``, ``id = "<time>#<random>"``: one entry, in the partition
  of its day (UTC). ``id`` begins with the fixed-width time (``item_time``), so a day reads
  newest first with ``ScanIndexForward=False``, and ``since``/``until`` are a range on it;
- ``queue = "audit"``, ``id = "<YYYY-MM-DD>"``: the days that hold entries, written once
  per day and process before the first entry of that day.

A listing reads the days newest first (those between ``since`` and ``until`` only), then
each day's entries newest first, until ``limit`` entries are found: strongly consistent
``Query`` calls, never a ``Scan``. The user, node and action filters cannot be part of a
key here; they are a ``FilterExpression``, so DynamoDB reads (and bills) the days' entries
that do not match as well: a filtered listing without ``since`` reads back until it has
``limit`` matches or the trail ends.

Why days: the outbox table has a local index, which limits every partition to 10 GB; and a
partition takes at most 1,000 writes a second. A day of administrative actions and rate-
limited denials is far below both, and a listing of recent entries reads one or two
partitions. Why this table: only a table (or a local index) reads consistently, so an
administrator sees the action they just did; entries carry no ``position``, so they stay
out of the queue's index ``byTime``.

Entries an older version kept in the limits table (``audit#<time>#<random>``) are moved here
by the upgrade (:mod:`nodecert.store.dynamodb.upgrade`).

Not a public module: :class:`nodecert.store.dynamodb.outbox.DynamoDBOutbox` uses it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nodecert.core.values import AuditEntry, AuditQuery
from nodecert.store.dynamodb.items import item_time, parse_time
from nodecert.store.dynamodb.tables import dynamodb_call, pages

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = [
    "AUDIT_DAYS",
    "DynamoDBAuditTrail",
    "day_item",
    "day_partition",
    "entry_item",
    "list_day",
]

_log = logging.getLogger("nodecert.audit")

AUDIT_DAYS = "audit"
"""The outbox table's partition that lists the days holding audit entries."""


def day_partition(day: str) -> str:
    """The outbox table's partition of one day's audit entries (``day`` is YYYY-MM-DD)."""
    return f"{AUDIT_DAYS}#{day}"


def day_item(day: str) -> dict[str, Any]:
    """The item that lists ``day`` among the days holding entries."""
    return {"queue": {"S": AUDIT_DAYS}, "id": {"S": day}}


def list_day(client: DynamoDBClient, table: str, day: str, *, listed: set[str]) -> None:
    """List ``day`` among the days holding entries, unless it is in ``listed`` (the days
    this writer listed already: one write per day, not one per entry); then it is.

    Called before the day's first entry is written, so that the entry is always found.

    Raises:
        StoreUnavailableError: DynamoDB cannot answer now (``day`` stays unlisted).
    """
    if day not in listed:
        dynamodb_call(lambda: client.put_item(TableName=table, Item=day_item(day)))
        listed.add(day)


def entry_item(entry: AuditEntry, *, ident: str | None = None) -> dict[str, Any]:
    """The outbox table's item for ``entry``.

    Args:
        entry: The entry.
        ident: Its ``id`` (``<time>#<random>``); a new one when None.
    """
    stamp = item_time(entry.at)
    return {
        "queue": {"S": day_partition(stamp[:10])},
        "id": {"S": ident or f"{stamp}#{uuid.uuid4().hex}"},
        "at": {"S": stamp},
        "actor": {"S": entry.actor},
        "action": {"S": entry.action},
        "target": {"S": entry.target},
        "detail": {"S": entry.detail},
        "userId": {"S": entry.user_id},
        "nodeId": {"S": entry.node_id},
        "source": {"S": entry.source},
    }


class DynamoDBAuditTrail:
    """The audit trail in the outbox table (see the module).

    Implements ``nodecert.core.ports.AuditTrail``.

    Args:
        client: A boto3 ``dynamodb`` client.
        table: The outbox table name.
    """

    def __init__(self, client: DynamoDBClient, *, table: str) -> None:
        self._client = client
        self._table = table
        # Days this process has listed already: one write per day, not one per entry.
        self._days_listed: set[str] = set()
        # Items per page: DynamoDB's 1 MB pages when empty; tests set a small Limit.
        self.page: dict[str, Any] = {}

    def append_audit(self, entry: AuditEntry) -> None:
        """Record an administrative action (its day listed first, so it is always found)."""
        item = entry_item(entry)
        list_day(self._client, self._table, item["at"]["S"][:10], listed=self._days_listed)
        dynamodb_call(lambda: self._client.put_item(TableName=self._table, Item=item))

    def audit_entries(
        self, *, limit: int = 100, query: AuditQuery | None = None
    ) -> list[AuditEntry]:
        """The most recent audit entries ``query`` selects, newest first."""
        query = query or AuditQuery(limit=limit)
        if query.limit < 1 or (
            query.since is not None and query.until is not None and query.since >= query.until
        ):
            return []  # Nothing can match (and DynamoDB refuses an inverted BETWEEN).
        found: list[AuditEntry] = []
        for day in self._days(query):
            found += self._entries_of(day, query, want=query.limit - len(found))
            if len(found) >= query.limit:
                break
        return found[: query.limit]

    def _days(self, query: AuditQuery) -> Iterator[str]:
        # The days between since's and until's (both inclusive), newest first.
        values: dict[str, Any] = {":queue": {"S": AUDIT_DAYS}}
        condition = "#queue = :queue"
        if query.since is not None:
            values[":first"] = {"S": item_time(query.since)[:10]}
        if query.until is not None:
            values[":last"] = {"S": item_time(query.until)[:10]}
        if query.since is not None and query.until is not None:
            condition += " AND #id BETWEEN :first AND :last"
        elif query.since is not None:
            condition += " AND #id >= :first"
        elif query.until is not None:
            condition += " AND #id <= :last"
        names = {"#queue": "queue", **({"#id": "id"} if len(values) > 1 else {})}
        for item in self._query(
            KeyConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        ):
            yield item["id"]["S"]

    def _entries_of(self, day: str, query: AuditQuery, *, want: int) -> list[AuditEntry]:
        # One day's entries newest first: since/until a range of the sort key (an id is
        # "<time>#<random>", so "<until>" sorts before every id at until: excluded, as
        # AuditQuery wants), the rest a filter.
        values: dict[str, Any] = {":queue": {"S": day_partition(day)}}
        names = {"#queue": "queue"}
        condition = "#queue = :queue"
        if query.since is not None:
            values[":since"] = {"S": item_time(query.since)}
        if query.until is not None:
            values[":until"] = {"S": item_time(query.until)}
        if query.since is not None and query.until is not None:
            condition += " AND #id BETWEEN :since AND :until"
        elif query.since is not None:
            condition += " AND #id >= :since"
        elif query.until is not None:
            condition += " AND #id < :until"
        if query.since is not None or query.until is not None:
            names["#id"] = "id"
        filters = []
        for attribute, value in (("userId", query.user_id), ("nodeId", query.node_id)):
            if value is not None:
                names[f"#{attribute}"] = attribute
                values[f":{attribute}"] = {"S": value}
                filters.append(f"#{attribute} = :{attribute}")
        if query.action is not None:
            names["#action"] = "action"
            values[":action"] = {"S": query.action}
            # A prefix ends in a dot, and begins_with includes the equal string.
            filters.append(
                "begins_with(#action, :action)"
                if query.action.endswith(".")
                else "#action = :action"
            )
        extra: dict[str, Any] = {}
        if filters:
            # Limit counts the items read, not the matches: read whole pages.
            extra["FilterExpression"] = " AND ".join(filters)
        entries: list[AuditEntry] = []
        for item in self._query(
            KeyConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            limit=None if filters else want,
            **extra,
        ):
            try:
                entries.append(_entry(item))
            except (KeyError, TypeError, ValueError):
                _log.warning("audit: malformed item %r/%r skipped", day, item.get("id"))
                continue
            if len(entries) >= want:
                break
        return entries

    def _query(self, *, limit: int | None = None, **request: Any) -> Iterator[dict[str, Any]]:
        # Newest first, consistently, page by page (read lazily: a listing stops early).
        page = {"Limit": limit, **self.page} if limit is not None else self.page
        for response in pages(
            lambda start: self._client.query(
                TableName=self._table,
                ScanIndexForward=False,
                ConsistentRead=True,
                **request,
                **page,
                **start,
            )
        ):
            yield from response.get("Items", [])


def _entry(item: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        at=parse_time(item["at"]["S"]),
        actor=item["actor"]["S"],
        action=item["action"]["S"],
        target=item["target"]["S"],
        detail=item["detail"]["S"],
        # Entries written before these attributes existed have none.
        user_id=item.get("userId", {}).get("S", ""),
        node_id=item.get("nodeId", {}).get("S", ""),
        source=item.get("source", {}).get("S", ""),
    )
