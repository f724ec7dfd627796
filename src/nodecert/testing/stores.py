"""An in-memory store for tests: every store port, no database.

Use it to test code built on nodecert's use cases without a file or a server, as httpx's
``MockTransport`` stands in for the network::

    store = MemoryStore()
    authority = Authority(ca=ca, ledger=store, nodes=store, outbox=store, audit=store, ...)

It behaves as the real stores do (conflicts, idempotent revocation, renewal at most once,
newest-first listings, the revocation queue, the audit trail, single-use keys, token
buckets), all in one process and lost when it goes. Setting
``down`` makes every call fail as a store that cannot be reached does; ``calls`` counts
the calls, to prove that something was (or was not) asked of the store.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from nodecert.core.errors import ConflictError, NotFoundError, StoreUnavailableError
from nodecert.core.values import (
    AuditEntry,
    AuditQuery,
    CertificateQuery,
    CertificateRecord,
    CertificateStatus,
    Commit,
    NodeRecord,
    PendingRevocation,
    RevocationReason,
)
from nodecert.store.memory_query import select_rows

__all__ = ["MemoryStore"]


class MemoryStore:
    """Every store port in memory: ``Ledger``, ``NodeDirectory``, ``RevocationOutbox``,
    ``AuditTrail``, ``ReplayGuard`` and ``RateLimiter``.

    Thread-safe; a row is committed when :meth:`record` returns.
    """

    never_waits = True  # Memory: nothing to wait for.

    def __init__(self) -> None:
        self.rows: dict[str, CertificateRecord] = {}
        self.owners: dict[str, NodeRecord] = {}
        self.queue: dict[str, PendingRevocation] = {}
        self.audit: list[AuditEntry] = []
        self.used: dict[str, datetime] = {}
        self.buckets: dict[str, tuple[float, datetime]] = {}
        self.down = False
        self.calls = 0
        self._lock = threading.RLock()

    def _touch(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailableError("store: down (MemoryStore.down is set)")

    # Ledger

    def record(self, record: CertificateRecord) -> Commit:
        """Add a new row.

        Raises:
            ConflictError: the serial exists.
            StoreUnavailableError: ``down`` is set.
        """
        with self._lock:
            self._touch()
            if record.serial in self.rows:
                raise ConflictError(f"serial: {record.serial} is already in the ledger")
            self.rows[record.serial] = record
        return Commit.done()

    def get(self, serial: str) -> CertificateRecord | None:
        """The row for ``serial``, or None."""
        with self._lock:
            self._touch()
            return self.rows.get(serial)

    def find(
        self, *, user_id: str | None = None, node_id: str | None = None
    ) -> list[CertificateRecord]:
        """Rows for a user and/or a node, newest first."""
        return self.query(CertificateQuery(user_id=user_id, node_id=node_id))

    def query(self, query: CertificateQuery) -> list[CertificateRecord]:
        """The rows ``query`` asks for, newest first."""
        with self._lock:
            self._touch()
            return select_rows(self.rows.values(), query)

    def mark_revoked(
        self, serial: str, *, reason: RevocationReason, at: datetime
    ) -> CertificateRecord:
        """Mark ``serial`` revoked (a second time changes nothing).

        Raises:
            NotFoundError: no such serial.
        """
        with self._lock:
            self._touch()
            row = self.rows.get(serial)
            if row is None:
                raise NotFoundError(f"serial: no certificate {serial}")
            if row.status is not CertificateStatus.REVOKED:
                row = replace(
                    row, status=CertificateStatus.REVOKED, revoked_at=at, revocation_reason=reason
                )
                self.rows[serial] = row
            return row

    def record_successor(self, record: CertificateRecord) -> None:
        """Add ``record`` and mark its predecessor superseded, both or neither.

        Raises:
            ConflictError: the predecessor is not active (or missing), or the serial exists.
        """
        with self._lock:
            self._touch()
            predecessor = self.rows.get(record.renewed_from or "")
            if predecessor is None or predecessor.status is not CertificateStatus.ACTIVE:
                raise ConflictError(f"renewal: {record.renewed_from} is not active any more")
            if record.serial in self.rows:
                raise ConflictError(f"serial: {record.serial} is already in the ledger")
            self.rows[predecessor.serial] = replace(
                predecessor, status=CertificateStatus.SUPERSEDED, superseded_by=record.serial
            )
            self.rows[record.serial] = record

    # RevocationOutbox

    def revoke_and_queue(
        self, serials: Sequence[str], *, reason: RevocationReason, at: datetime
    ) -> list[CertificateRecord]:
        """Revoke the live rows of ``serials`` and queue their CA revocations."""
        with self._lock:
            self._touch()
            revoked = []
            for serial in serials:
                row = self.rows.get(serial)
                if row is None or not row.status.is_live:
                    continue
                row = replace(
                    row, status=CertificateStatus.REVOKED, revoked_at=at, revocation_reason=reason
                )
                self.rows[serial] = row
                self.queue.setdefault(serial, PendingRevocation(serial, reason, row.issuer, at))
                revoked.append(row)
            return revoked

    def pending_revocations(self, *, limit: int) -> list[PendingRevocation]:
        """Up to ``limit`` queued CA revocations, oldest first."""
        with self._lock:
            self._touch()
            return list(self.queue.values())[:limit]

    def revocation_sent(self, serial: str) -> None:
        """Take ``serial`` off the queue."""
        with self._lock:
            self._touch()
            self.queue.pop(serial, None)

    def count_pending_revocations(self) -> int:
        """How many CA revocations are queued."""
        with self._lock:
            self._touch()
            return len(self.queue)

    # AuditTrail

    def append_audit(self, entry: AuditEntry) -> None:
        """Record ``entry``."""
        with self._lock:
            self._touch()
            self.audit.append(entry)

    def audit_entries(
        self, *, limit: int = 100, query: AuditQuery | None = None
    ) -> list[AuditEntry]:
        """The most recent entries ``query`` selects, newest first."""
        query = query or AuditQuery(limit=limit)
        with self._lock:
            self._touch()
            return [e for e in self.audit[::-1] if query.matches(e)][: query.limit]

    # NodeDirectory

    def owner_of(self, node_id: str) -> str | None:
        """The owner of ``node_id``, or None."""
        with self._lock:
            self._touch()
            record = self.owners.get(node_id)
            return None if record is None else record.owner

    def put_node(self, node_id: str, owner: str, *, at: datetime) -> NodeRecord:
        """Create ``node_id`` or give it to ``owner`` (keeping its creation time)."""
        with self._lock:
            self._touch()
            previous = self.owners.get(node_id)
            record = NodeRecord(node_id, owner, at if previous is None else previous.created_at)
            self.owners[node_id] = record
            return record

    def delete_node(self, node_id: str) -> bool:
        """Remove a node; False if it did not exist."""
        with self._lock:
            self._touch()
            return self.owners.pop(node_id, None) is not None

    def list_nodes(self, *, owner: str | None = None) -> list[NodeRecord]:
        """All nodes, or those of ``owner``, by node id."""
        with self._lock:
            self._touch()
            return sorted(
                (r for r in self.owners.values() if owner is None or r.owner == owner),
                key=lambda r: r.node_id,
            )

    # ReplayGuard

    def use_once(self, key: str, *, expires_at: datetime) -> None:
        """Record ``key`` as used until ``expires_at``.

        Raises:
            ConflictError: ``key`` was used before and has not expired yet.
        """
        with self._lock:
            self._touch()
            previous = self.used.get(key)
            if previous is not None and previous >= datetime.now(UTC):
                raise ConflictError("token: already used")
            self.used[key] = expires_at

    def release(self, key: str, *, expires_at: datetime) -> None:
        """Forget ``key`` if it is recorded until exactly ``expires_at``."""
        with self._lock:
            self._touch()
            if self.used.get(key) == expires_at:
                del self.used[key]

    # RateLimiter

    def take_token(self, key: str, *, capacity: float, refill_per_s: float, now: datetime) -> float:
        """Take one token from bucket ``key``: 0.0 when granted, else the seconds to wait."""
        with self._lock:
            self._touch()
            tokens, last = self.buckets.get(key, (capacity, now))
            elapsed = max((now - last).total_seconds(), 0.0)
            tokens = min(capacity, tokens + elapsed * refill_per_s)
            if tokens >= 1.0:
                self.buckets[key] = (tokens - 1.0, now)
                return 0.0
            self.buckets[key] = (tokens, now)
            return (1.0 - tokens) / refill_per_s if refill_per_s > 0 else float("inf")
