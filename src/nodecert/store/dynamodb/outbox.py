"""Revocations that always finish, and the audit trail, in DynamoDB.

The revocation outbox has a table of its own (``OutboxTable`` in ``deploy/template.yaml``:
partition key ``queue``, sort key ``id``, and the local index ``byTime``), so that the sweep
reads only what is queued, with strongly consistent ``Query`` calls, never a ``Scan``:

- ``queue = "revoke"``, ``id = <serial>``: a queued CA revocation. Its ``position``
  (``<queuedAt>#<serial>``) puts it in ``byTime``, which gives the oldest first; a local
  index, because only a local index can be read with ``ConsistentRead``. A revocation is
  one transaction per certificate: the row's conditional update to ``revoked`` together
  with this item;
- ``queue = "sweep"``, ``id = <time>#<random>``: a sweep of many rows is first written
  down as such an item (its serials), then done as that many transactions, and the item
  deleted once its rows are done: the completion marker. One left behind (a crash, an
  outage) is finished by the next drain;
- ``queue = "moved"``: the upgrade's own marker (:mod:`nodecert.store.dynamodb.upgrade`
  moves the items an older version left in the limits table).

The audit trail is in the same table, one partition per day
(:mod:`nodecert.store.dynamodb.audit`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nodecert.core.values import (
    AuditEntry,
    AuditQuery,
    CertificateRecord,
    CertificateStatus,
    PendingRevocation,
    RevocationReason,
)
from nodecert.store.dynamodb.audit import DynamoDBAuditTrail
from nodecert.store.dynamodb.items import certificate_from_item, item_time, parse_time
from nodecert.store.dynamodb.tables import BY_TIME, ConditionFailedError, dynamodb_call, pages
from nodecert.store.dynamodb.upgrade import REVOKE, SWEEP, OldLayoutMover, queued_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["DynamoDBOutbox"]

_log = logging.getLogger("nodecert.revocation")

# Serials per sweep item: 1,000 of at most 40 characters stay far below DynamoDB's 400 KB.
_SWEEP_CHUNK = 1000


class DynamoDBOutbox:
    """The CA revocation queue and the audit trail (the outbox table).

    Implements ``nodecert.core.ports.RevocationOutbox`` and ``AuditTrail``.

    Args:
        client: A boto3 ``dynamodb`` client (the store's).
        certificates_table: The certificates table (revocations update its rows).
        outbox_table: The outbox table name.
        limits_table: The limits table name: where an older version kept the outbox and
            the audit trail (moved from there by the first drains after an upgrade).
        clock: The current time (UTC), for the upgrade's timing.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        *,
        certificates_table: str,
        outbox_table: str,
        limits_table: str,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._client = client
        self._certificates = certificates_table
        self._table = outbox_table
        self._limits = limits_table
        # Items per page: DynamoDB's 1 MB pages when empty; tests set a small Limit.
        self._page: dict[str, Any] = {}
        self.audit = DynamoDBAuditTrail(client, table=outbox_table)
        self.upgrade = OldLayoutMover(
            client,
            limits_table=limits_table,
            outbox_table=outbox_table,
            clock=clock or (lambda: datetime.now(UTC)),
        )

    # RevocationOutbox

    def revoke_and_queue(
        self, serials: Sequence[str], *, reason: RevocationReason, at: datetime
    ) -> list[CertificateRecord]:
        """Revoke the live rows of ``serials``, each with its queue item in one transaction.

        Returns:
            The rows this call revoked (already revoked or unknown serials are skipped).

        DynamoDB has no transaction of unbounded size, so a sweep is first written down
        (a ``sweep#`` item naming its serials, in chunks), then done row by row, and the
        item deleted when the last row is done: its completion marker. A sweep cut short
        (a crash, an outage) is finished by the next :meth:`pending_revocations`.

        Raises:
            StoreUnavailableError: DynamoDB cannot answer now; the rows revoked before the
                failure stay revoked (and queued), and the sweep is finished later.
        """
        revoked = []
        for start in range(0, len(serials), _SWEEP_CHUNK):
            chunk = list(serials[start : start + _SWEEP_CHUNK])
            key = f"{item_time(at)}#{uuid.uuid4().hex}"
            dynamodb_call(
                lambda chunk=chunk, key=key: self._client.put_item(  # type: ignore[misc]
                    TableName=self._table,
                    Item={
                        "queue": {"S": SWEEP},
                        "id": {"S": key},
                        "serials": {"L": [{"S": serial} for serial in chunk]},
                        "reason": {"S": reason.value},
                        "at": {"S": item_time(at)},
                    },
                )
            )
            revoked += self._sweep(chunk, reason=reason, at=at)
            self._delete(SWEEP, key)
        return revoked

    def _sweep(
        self, serials: Sequence[str], *, reason: RevocationReason, at: datetime
    ) -> list[CertificateRecord]:
        revoked = []
        for serial in serials:
            row = self._revoke_one(serial, reason=reason, at=at)
            if row is not None:
                revoked.append(row)
        return revoked

    def _finish_sweeps(self) -> None:
        # Per-row writes are conditional, so finishing a sweep that is still running
        # elsewhere only repeats writes that change nothing.
        for item in self._query(SWEEP):
            try:
                serials = [value["S"] for value in item["serials"]["L"]]
                reason = RevocationReason(item["reason"]["S"])
                at = parse_time(item["at"]["S"])
            except (KeyError, TypeError, ValueError):
                _log.warning("outbox: malformed item %r skipped; remove it", _key_of(item))
                continue
            self._sweep(serials, reason=reason, at=at)
            self._delete(SWEEP, item["id"]["S"])

    def _delete(self, queue: str, key: str) -> None:
        dynamodb_call(
            lambda: self._client.delete_item(
                TableName=self._table, Key={"queue": {"S": queue}, "id": {"S": key}}
            )
        )

    def _revoke_one(
        self, serial: str, *, reason: RevocationReason, at: datetime
    ) -> CertificateRecord | None:
        response = dynamodb_call(
            lambda: self._client.get_item(
                TableName=self._certificates, Key={"serial": {"S": serial}}, ConsistentRead=True
            )
        )
        if "Item" not in response:
            return None
        try:
            row = certificate_from_item(response["Item"])
        except (KeyError, TypeError, ValueError):
            _log.warning("outbox: malformed ledger row %r not revoked; repair it", serial)
            return None
        if not row.status.is_live:
            return None
        stamp = item_time(at)
        # The issuer was read above: a row's issuer never changes once recorded.
        queued = queued_item(serial, reason=reason.value, issuer=row.issuer, queued_at=stamp)
        try:
            dynamodb_call(
                lambda: self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self._certificates,
                                "Key": {"serial": {"S": serial}},
                                "UpdateExpression": (
                                    "SET #status = :revoked, revokedAt = :at,"
                                    " revocationReason = :why"
                                ),
                                "ConditionExpression": "#status IN (:active, :superseded)",
                                "ExpressionAttributeNames": {"#status": "status"},
                                "ExpressionAttributeValues": {
                                    ":revoked": {"S": CertificateStatus.REVOKED.value},
                                    ":active": {"S": CertificateStatus.ACTIVE.value},
                                    ":superseded": {"S": CertificateStatus.SUPERSEDED.value},
                                    ":at": {"S": stamp},
                                    ":why": {"S": reason.value},
                                },
                            }
                        },
                        {"Put": {"TableName": self._table, "Item": queued}},
                    ]
                ),
                conflict=True,
            )
        except ConditionFailedError:
            return None  # Revoked meanwhile by another sweep, which queued it.
        return replace(
            row,
            status=CertificateStatus.REVOKED,
            revoked_at=parse_time(stamp),
            revocation_reason=reason,
        )

    def pending_revocations(self, *, limit: int) -> list[PendingRevocation]:
        """Up to ``limit`` queued CA revocations, oldest first (sweeps cut short finished
        first, and the items of an older version's layout moved in first).

        One consistent ``Query`` of the ``byTime`` index, page by page until ``limit``
        well-formed items are read (a malformed item is logged, skipped and not counted).
        """
        self.upgrade.move_if_due()
        self._finish_sweeps()
        queued: list[PendingRevocation] = []
        start: dict[str, Any] = {}
        while len(queued) < limit:
            response = dynamodb_call(
                lambda start=start: self._client.query(  # type: ignore[misc]
                    TableName=self._table,
                    IndexName=BY_TIME,
                    KeyConditionExpression="#queue = :queue",
                    ExpressionAttributeNames={"#queue": "queue"},
                    ExpressionAttributeValues={":queue": {"S": REVOKE}},
                    ConsistentRead=True,
                    **{"Limit": limit - len(queued), **self._page},
                    **start,
                )
            )
            for item in response.get("Items", []):
                try:
                    queued.append(
                        PendingRevocation(
                            serial=item["id"]["S"],
                            reason=RevocationReason(item["reason"]["S"]),
                            issuer=item["issuer"]["S"] if "issuer" in item else None,
                            queued_at=parse_time(item["queuedAt"]["S"]),
                        )
                    )
                except (KeyError, TypeError, ValueError):
                    # One bad item must not stop the queue; it stays counted as pending.
                    _log.warning("outbox: malformed item %r skipped; remove it", _key_of(item))
            last = response.get("LastEvaluatedKey")
            if not last:
                break
            start = {"ExclusiveStartKey": last}
        return queued[:limit]

    def revocation_sent(self, serial: str) -> None:
        """Take ``serial`` off the CA revocation queue."""
        self._delete(REVOKE, serial)

    def count_pending_revocations(self) -> int:
        """How many CA revocations are queued (a consistent ``Query`` that counts)."""
        return sum(
            response.get("Count", 0)
            for response in pages(
                lambda start: self._client.query(
                    TableName=self._table,
                    KeyConditionExpression="#queue = :queue",
                    ExpressionAttributeNames={"#queue": "queue"},
                    ExpressionAttributeValues={":queue": {"S": REVOKE}},
                    Select="COUNT",
                    ConsistentRead=True,
                    **self._page,
                    **start,
                )
            )
        )

    # AuditTrail (its own module: the outbox table's "audit" partitions)

    def append_audit(self, entry: AuditEntry) -> None:
        """Record an administrative action."""
        self.audit.append_audit(entry)

    def audit_entries(
        self, *, limit: int = 100, query: AuditQuery | None = None
    ) -> list[AuditEntry]:
        """The most recent audit entries ``query`` selects, newest first."""
        return self.audit.audit_entries(limit=limit, query=query)

    def _query(self, queue: str) -> list[dict[str, Any]]:
        # Every item of one queue, consistently, page by page.
        return [
            item
            for response in pages(
                lambda start: self._client.query(
                    TableName=self._table,
                    KeyConditionExpression="#queue = :queue",
                    ExpressionAttributeNames={"#queue": "queue"},
                    ExpressionAttributeValues={":queue": {"S": queue}},
                    ConsistentRead=True,
                    **self._page,
                    **start,
                )
            )
            for item in response.get("Items", [])
        ]


def _key_of(item: dict[str, Any]) -> str:
    # "<queue>/<id>", as an operator would find the item in the console.
    parts = [item.get(name) for name in ("queue", "id")]
    return "/".join(str(p.get("S")) if isinstance(p, dict) else "?" for p in parts)
