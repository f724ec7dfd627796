"""The upgrade of the DynamoDB outbox: an older version's items moved to the outbox table.

Before the outbox had a table of its own, its items lived in the limits table, keyed
``revoke#<serial>`` (a queued CA revocation) and ``sweep#<time>#<random>`` (a revoke-all
cut short), and so did the audit trail (``audit#<time>#<random>``, an entry). After an
upgrade some may still be there, and during the deploy a function still running the older
code may write a few more. The drain moves them, so every queued revocation still reaches
the CA, every audit entry is listed (in its day's partition,
:mod:`nodecert.store.dynamodb.audit`), and nothing reads two layouts for good:

- at most once a :data:`CHECK_EVERY` per process, one filtered ``Scan`` of the limits table
  finds the older items; each is written to the outbox table, then deleted from the limits
  table (a move cut short is done again: the write is the same, the CA told twice is no
  error);
- a scan that finds nothing records the time in a marker item (``queue = "moved"``,
  ``id = "limits+audit"``: a stack that ran the version which moved only the queue, marked
  ``limits``, is looked at once more for its audit entries); a scan that finds some
  deletes the marker. Once the limits table has been seen empty for :data:`QUIET` (longer
  than any function's timeout, so no older code can still be running), no process scans
  it again: one consistent ``GetItem`` of the marker per process, then nothing.

Not a public module: :class:`nodecert.store.dynamodb.outbox.DynamoDBOutbox` runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from nodecert.store.dynamodb.audit import AUDIT_DAYS, day_partition, list_day
from nodecert.store.dynamodb.items import item_time, parse_time
from nodecert.store.dynamodb.tables import dynamodb_call, pages

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = [
    "CHECK_EVERY",
    "MOVED",
    "OLD_PREFIXES",
    "QUIET",
    "REVOKE",
    "SWEEP",
    "OldLayoutMover",
    "moved_item",
    "queued_item",
]

_log = logging.getLogger("nodecert.revocation")

CHECK_EVERY = timedelta(minutes=1)
"""How often one process looks in the limits table (once per sweep run, not per batch)."""

QUIET = timedelta(hours=1)
"""How long the limits table must have held no outbox item before nobody looks again: far
longer than a function's timeout (15 minutes at most), the longest an older version can run
after the deploy that replaced it."""

REVOKE = "revoke"
"""The outbox table's partition of queued CA revocations."""
SWEEP = "sweep"
"""The outbox table's partition of revoke-alls in progress."""
MOVED = "moved"
"""The outbox table's partition of the upgrade's marker."""
OLD_PREFIXES = {"revoke#": REVOKE, "sweep#": SWEEP, "audit#": AUDIT_DAYS}
"""The limits table's key prefixes of the older layout, and where each goes (an audit
entry to its day's partition)."""

_MARKER = {"queue": {"S": MOVED}, "id": {"S": "limits+audit"}}


def queued_item(serial: str, *, reason: str, issuer: str | None, queued_at: str) -> dict[str, Any]:
    """The outbox table's item for a queued CA revocation.

    Args:
        serial: The certificate's serial (lower-case hex).
        reason: The revocation reason's value.
        issuer: The issuing CA recorded on the ledger row, if any.
        queued_at: When it was queued (``item_time``).
    """
    item: dict[str, Any] = {
        "queue": {"S": REVOKE},
        "id": {"S": serial},
        "position": {"S": f"{queued_at}#{serial}"},
        "reason": {"S": reason},
        "queuedAt": {"S": queued_at},
    }
    if issuer is not None:
        item["issuer"] = {"S": issuer}
    return item


def moved_item(item: dict[str, Any]) -> dict[str, Any] | None:
    """The outbox table's item for an item of the older layout, or None when it is none.

    Every attribute is kept (a malformed queue item stays malformed, and is reported by the
    drain as before); a queued revocation gets its ``position``. An audit entry goes to the
    partition of its key's day; one whose key holds no time is none (left, and reported).
    """
    key = item.get("key", {}).get("S")
    if not isinstance(key, str):
        return None
    for prefix, queue in OLD_PREFIXES.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            ident = key[len(prefix) :]
            moved = {name: value for name, value in item.items() if name != "key"}
            moved.pop("serial", None)
            if queue == AUDIT_DAYS:
                day = _day_of(ident)
                if day is None:
                    return None
                queue = day_partition(day)
            moved.update({"queue": {"S": queue}, "id": {"S": ident}})
            if queue == REVOKE:
                # Without a time (malformed) it sorts first, so the drain reports it.
                queued_at = item.get("queuedAt", {}).get("S")
                moved["position"] = {
                    "S": f"{queued_at if isinstance(queued_at, str) else ''}#{ident}"
                }
            return moved
    return None


def _day_of(ident: str) -> str | None:
    # "<time>#<random>" -> the time's day, or None.
    stamp, _, rest = ident.partition("#")
    try:
        parse_time(stamp)
    except ValueError:
        return None
    return stamp[:10] if rest else None


class OldLayoutMover:
    """Moves the older layout's outbox items from the limits table (see the module).

    Args:
        client: A boto3 ``dynamodb`` client.
        limits_table: Where the older version kept the outbox.
        outbox_table: The outbox table.
        clock: The current time (UTC).
    """

    def __init__(
        self,
        client: DynamoDBClient,
        *,
        limits_table: str,
        outbox_table: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._limits = limits_table
        self._outbox = outbox_table
        self._clock = clock
        self._checked: datetime | None = None
        self.done = False
        """True once the limits table is known to hold no outbox item for good."""
        # Items per scan page: DynamoDB's 1 MB pages; tests set a small Limit.
        self.page: dict[str, Any] = {}

    def move_if_due(self) -> int:
        """Move what the older layout left, unless done or looked at less than
        :data:`CHECK_EVERY` ago; how many items were moved.

        Raises:
            StoreUnavailableError: DynamoDB cannot answer now (the next drain goes on).
        """
        if self.done:
            return 0
        now = self._clock()
        if self._checked is not None and now - self._checked < CHECK_EVERY:
            return 0
        marker = dynamodb_call(
            lambda: self._client.get_item(TableName=self._outbox, Key=_MARKER, ConsistentRead=True)
        ).get("Item", {})
        since = marker.get("emptySince", {}).get("S")
        if isinstance(since, str) and now - parse_time(since) >= QUIET:
            self.done = True
            return 0
        moved = 0
        days: set[str] = set()
        for item in self._old_items():
            new = moved_item(item)
            if new is None:
                _log.warning("outbox: malformed item %r left in the limits table", item.get("key"))
                continue
            day = new["queue"]["S"].removeprefix(day_partition(""))
            if day != new["queue"]["S"]:  # An audit entry: its day is listed first.
                list_day(self._client, self._outbox, day, listed=days)
            dynamodb_call(
                lambda new=new: self._client.put_item(  # type: ignore[misc]
                    TableName=self._outbox, Item=new
                )
            )
            dynamodb_call(
                lambda item=item: self._client.delete_item(  # type: ignore[misc]
                    TableName=self._limits, Key={"key": item["key"]}
                )
            )
            moved += 1
        if moved:
            _log.warning(
                "outbox: moved %d item(s) of the older layout from the limits table to the"
                " outbox table",
                moved,
            )
            dynamodb_call(lambda: self._client.delete_item(TableName=self._outbox, Key=_MARKER))
        elif since is None:
            dynamodb_call(
                lambda: self._client.put_item(
                    TableName=self._outbox,
                    Item={**_MARKER, "emptySince": {"S": item_time(now)}},
                )
            )
        self._checked = now
        return moved

    def _old_items(self) -> list[dict[str, Any]]:
        return [
            item
            for response in pages(
                lambda start: self._client.scan(
                    TableName=self._limits,
                    FilterExpression=(
                        "begins_with(#key, :revoke) OR begins_with(#key, :sweep)"
                        " OR begins_with(#key, :audit)"
                    ),
                    ExpressionAttributeNames={"#key": "key"},
                    ExpressionAttributeValues={
                        ":revoke": {"S": "revoke#"},
                        ":sweep": {"S": "sweep#"},
                        ":audit": {"S": "audit#"},
                    },
                    ConsistentRead=True,
                    **self.page,
                    **start,
                )
            )
            for item in response.get("Items", [])
        ]
