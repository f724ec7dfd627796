"""SQLite ledger and node directory: one file, WAL mode, safe for several workers.

Each thread gets its own connection. Every write is committed before the method returns,
so a certificate is never handed out without its row; certificate rows from concurrent
requests share one commit (``groupcommit``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

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
from nodecert.store.sql import ledger, outbox
from nodecert.store.sql.ledger import (
    COLUMNS,
    Dialect,
    bucket_statements,
    certificate_from_row,
    certificate_row,
    certificate_select,
    insert_certificate,
    schema,
    seconds_until_token,
)
from nodecert.store.sqlite.file import SQLiteFile
from nodecert.store.sqlite.groupcommit import GroupCommitter
from nodecert.support.times import utc_isoformat

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

# Version 2 added used_tokens (single-use renewal token ids), version 3 rate_buckets
# (issuance quotas, since moved to a file of their own), version 4 certificates.issuer (the
# CA that signed), version 5 certificates.dns_names and superseded_by, revocation_outbox
# and audit_log, version 6 audit_log.user_id, node_id and source, version 7
# certificates.user_subject (the provider's subject of the user) and ip_addresses (of node
# certificates). CREATE TABLE IF NOT EXISTS and _upgrade bring older files up in place.
SCHEMA_VERSION = 7

# ISO 8601 UTC text sorts as time does ("+" sorts before "."), which ORDER BY and query()
# rely on: every time is written by _SQLITE.to_time.
_SQLITE = Dialect(
    mark=lambda name: f":{name}",
    time_type="TEXT",
    id_type="TEXT",
    to_time=utc_isoformat,
    from_time=datetime.fromisoformat,
)
_SCHEMA = schema(_SQLITE)
# Rate buckets live in a file of their own, written without fsync: a bucket write must
# never queue behind a ledger commit that is waiting for the disk.
_RATES_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_buckets (
    key         TEXT PRIMARY KEY,
    tokens      REAL NOT NULL,
    updated_at  REAL NOT NULL
);
"""
# Positional: the committing thread binds each row's 19 values by position, not by name.
_INSERT_CERTIFICATE = insert_certificate(_SQLITE, positional="?")
_BUSY_TIMEOUT_S = 5.0


class SQLiteStore:
    """The ledger, node directory, used tokens and rate buckets, in SQLite files.

    Implements ``Ledger`` (its new rows group-committed), ``NodeDirectory``,
    ``RevocationOutbox``, ``AuditTrail``, ``ReplayGuard`` and ``RateLimiter``.

    Args:
        path: The database file; created (with its schema) when missing. Rate buckets go
            to a second file beside it (``<name>-rates<suffix>``).
        busy_timeout_s: How long a write waits for another writer's lock before the
            store reports itself unavailable (503); a new certificate row, from the moment
            it is queued for the group commit.
        synchronous: ``full`` (default) makes every commit durable on disk before it
            returns: a certificate is never handed out whose row a power cut could lose.
            ``normal`` (WAL) skips that fsync: commits survive a crash or ``kill -9`` of
            nodecert but not of the machine, and issuance is much faster
            (docs/performance.md).

    Raises:
        StoreUnavailableError: the file cannot be opened, or has a newer schema.
    """

    never_waits = True  # Rows go to the committer thread; the event loop awaits the commit.

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_s: float = _BUSY_TIMEOUT_S,
        synchronous: str = "full",
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous: {synchronous!r} is not 'full' or 'normal'")
        self.path = path
        self._db = SQLiteFile(path, synchronous=synchronous.upper(), busy_timeout_s=busy_timeout_s)
        self._rates = SQLiteFile(
            path.with_name(f"{path.stem}-rates{path.suffix}"),
            synchronous="OFF",
            busy_timeout_s=busy_timeout_s,
        )
        self._committer = GroupCommitter(
            self._commit_rows, name="nodecert-ledger-commit", max_wait_s=busy_timeout_s
        )
        try:
            # Every worker opens the store as it starts. A file whose schema is current is
            # only read: a write lock held elsewhere (a backup, the sqlite3 shell, a long
            # transaction) must not keep a worker from starting, and from answering 503s
            # while it lasts. Only a new or older file waits for the lock.
            if not self._schema_is_current():
                with self._db.transaction(write=True) as db:
                    self._check_version(db)
                    db.executescript(_SCHEMA)
                    _upgrade(db)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if not self._rates_exist():
                with self._rates.transaction(write=True) as db:
                    db.executescript(_RATES_SCHEMA)
        except StoreUnavailableError:
            self.close()
            raise

    def _schema_is_current(self) -> bool:
        with self._db.transaction() as db:
            return self._check_version(db) == SCHEMA_VERSION

    def _check_version(self, db: sqlite3.Connection) -> int:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreUnavailableError(
                f"store: {self.path} has schema version {version}; this nodecert knows"
                f" {SCHEMA_VERSION} (upgrade nodecert)"
            )
        return version

    def _rates_exist(self) -> bool:
        with self._rates.transaction() as db:
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rate_buckets'"
            ).fetchone()
        return found is not None

    # NodeDirectory

    def owner_of(self, node_id: str) -> str | None:
        """The owner of ``node_id``, or None."""
        with self._db.transaction() as db:
            row = db.execute("SELECT owner FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
        return None if row is None else str(row[0])

    def put_node(self, node_id: str, owner: str, *, at: datetime) -> NodeRecord:
        """Create ``node_id`` or re-assign it to ``owner``."""
        with self._db.transaction(write=True) as db:
            db.execute(
                "INSERT INTO nodes (node_id, owner, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (node_id) DO UPDATE SET owner = excluded.owner",
                (node_id, owner, at.isoformat()),
            )
            row = db.execute(
                "SELECT node_id, owner, created_at FROM nodes WHERE node_id = ?", (node_id,)
            ).fetchone()
        return _node(row)

    def delete_node(self, node_id: str) -> bool:
        """Remove ``node_id``; False when there was no such node."""
        with self._db.transaction(write=True) as db:
            return db.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,)).rowcount > 0

    def list_nodes(self, *, owner: str | None = None) -> list[NodeRecord]:
        """All nodes (or ``owner``'s), by node id."""
        query = "SELECT node_id, owner, created_at FROM nodes"
        args: tuple[str, ...] = ()
        if owner is not None:
            query, args = query + " WHERE owner = ?", (owner,)
        with self._db.transaction() as db:
            return [_node(row) for row in db.execute(query + " ORDER BY node_id", args)]

    # Ledger

    def record(self, record: CertificateRecord) -> Commit:
        """Queue a new certificate row for the next group commit.

        The returned commit completes once the row is durable. Rows from every thread of
        this process share commits, so concurrent issuances pay for one fsync between
        them; ``record(row).wait()`` is a plain synchronous write.

        Raises:
            ConflictError: (from the commit) the serial is already recorded; it is never
                overwritten.
            StoreUnavailableError: (from the commit) the row could not be committed.
        """
        return Commit(self._committer.submit(certificate_row(record, _SQLITE)))

    def _commit_rows(self, rows: Sequence[tuple[object, ...]]) -> list[Exception | None]:
        outcomes: list[Exception | None] = []
        with self._db.transaction(write=True) as db:
            for values in rows:
                try:
                    db.execute(_INSERT_CERTIFICATE, values)
                    outcomes.append(None)
                except sqlite3.IntegrityError as exc:
                    # Only this statement is rolled back; the other rows still commit.
                    conflict = ConflictError(f"serial: {values[0]} is already recorded")
                    conflict.__cause__ = exc
                    outcomes.append(conflict)
        return outcomes

    def get(self, serial: str) -> CertificateRecord | None:
        """The row for ``serial``, or None."""
        with self._db.transaction() as db:
            row = db.execute(
                f"SELECT {COLUMNS} FROM certificates WHERE serial = ?", (serial,)
            ).fetchone()
        return None if row is None else certificate_from_row(row, _SQLITE)

    def find(
        self, *, user_id: str | None = None, node_id: str | None = None
    ) -> list[CertificateRecord]:
        """Rows of a user and/or a node, newest first."""
        return self.query(CertificateQuery(user_id=user_id, node_id=node_id))

    def query(self, query: CertificateQuery) -> list[CertificateRecord]:
        """The rows ``query`` asks for, filtered, ordered and paged in SQL."""
        # ISO 8601 UTC text sorts as time does (see _row), so expiry is a text comparison.
        sql, args = certificate_select(
            query,
            COLUMNS,
            mark=lambda name: f":{name}",
            time=utc_isoformat,
        )
        with self._db.transaction() as db:
            rows = db.execute(sql, args).fetchall()
        return [certificate_from_row(row, _SQLITE) for row in rows]

    def revoked_entries(
        self, *, now: datetime
    ) -> list[tuple[str, datetime | None, RevocationReason | None]]:
        """Serial, revocation time and reason of each revoked, unexpired row (for the CRL).

        Three columns and no ordering: the CRL of 100,000 revoked certificates reads them
        in a fraction of what full rows would cost.
        """
        sql = (
            "SELECT serial, revoked_at, revocation_reason FROM certificates"
            " WHERE status = ? AND not_after > ?"
        )
        args = (CertificateStatus.REVOKED.value, now.astimezone(UTC).isoformat())
        with self._db.transaction() as db:
            rows = db.execute(sql, args).fetchall()
        reasons = {reason.value: reason for reason in RevocationReason}
        parse = datetime.fromisoformat
        return [
            (serial, parse(at) if at else None, reasons.get(reason)) for serial, at, reason in rows
        ]

    def mark_revoked(
        self, serial: str, *, reason: RevocationReason, at: datetime
    ) -> CertificateRecord:
        """Mark ``serial`` revoked; a second call keeps the first time and reason."""
        with self._db.transaction(write=True) as db:
            db.execute(
                "UPDATE certificates SET status = ?, revoked_at = ?, revocation_reason = ?"
                " WHERE serial = ? AND status != ?",
                (
                    CertificateStatus.REVOKED.value,
                    at.isoformat(),
                    reason.value,
                    serial,
                    CertificateStatus.REVOKED.value,
                ),
            )
            row = db.execute(
                f"SELECT {COLUMNS} FROM certificates WHERE serial = ?", (serial,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"serial: no certificate {serial}")
        return certificate_from_row(row, _SQLITE)

    def record_successor(self, record: CertificateRecord) -> None:
        """Commit ``record`` and supersede ``record.renewed_from``, in one transaction.

        Raises:
            ConflictError: the predecessor is not active any more, or the serial exists.
            StoreUnavailableError: the row could not be committed.
        """
        with self._db.transaction(write=True) as db:
            ledger.record_successor(db, record, _SQLITE)

    # RevocationOutbox

    def revoke_and_queue(
        self, serials: Sequence[str], *, reason: RevocationReason, at: datetime
    ) -> list[CertificateRecord]:
        """Revoke the live rows of ``serials`` and queue their CA revocations, in one
        transaction; return the rows this call revoked."""
        with self._db.transaction(write=True) as db:
            return outbox.revoke_and_queue(db, serials, reason=reason, at=at, dialect=_SQLITE)

    def pending_revocations(self, *, limit: int) -> list[PendingRevocation]:
        """Up to ``limit`` queued CA revocations, oldest first."""
        with self._db.transaction() as db:
            return outbox.pending_revocations(db, limit=limit, dialect=_SQLITE)

    def revocation_sent(self, serial: str) -> None:
        """Take ``serial`` off the CA revocation queue."""
        with self._db.transaction(write=True) as db:
            outbox.revocation_sent(db, serial, _SQLITE)

    def count_pending_revocations(self) -> int:
        """How many CA revocations are queued."""
        with self._db.transaction() as db:
            return outbox.count_pending(db)

    # AuditTrail

    def append_audit(self, entry: AuditEntry) -> None:
        """Record an administrative action (committed before this returns)."""
        with self._db.transaction(write=True) as db:
            outbox.insert_audit(db, entry, _SQLITE)

    def audit_entries(
        self, *, limit: int = 100, query: AuditQuery | None = None
    ) -> list[AuditEntry]:
        """The most recent audit entries ``query`` selects, newest first."""
        with self._db.transaction() as db:
            return outbox.audit_entries(db, query or AuditQuery(limit=limit), dialect=_SQLITE)

    # ReplayGuard

    def use_once(self, key: str, *, expires_at: datetime, now: datetime | None = None) -> None:
        """Record ``key`` as used until ``expires_at``; expired keys are purged first.

        Raises:
            ConflictError: ``key`` is already recorded and has not expired.
        """
        purge_before = _stamp(now or datetime.now(UTC))
        try:
            with self._db.transaction(write=True) as db:
                db.execute("DELETE FROM used_tokens WHERE expires_at < ?", (purge_before,))
                db.execute(
                    "INSERT INTO used_tokens (key, expires_at) VALUES (?, ?)",
                    (key, _stamp(expires_at)),
                )
        except sqlite3.IntegrityError as exc:
            raise ConflictError("token: already used") from exc

    def release(self, key: str, *, expires_at: datetime) -> None:
        """Forget ``key`` if it is recorded until exactly ``expires_at`` (a ``ReplayGuard``)."""
        with self._db.transaction(write=True) as db:
            db.execute(
                "DELETE FROM used_tokens WHERE key = ? AND expires_at = ?",
                (key, _stamp(expires_at)),
            )

    def take_token(self, key: str, *, capacity: float, refill_per_s: float, now: datetime) -> float:
        """Take one token from bucket ``key`` (a ``RateLimiter``); 0.0 when granted.

        One UPSERT does the read, the refill and the take, so concurrent workers can never
        both spend the last token.
        """
        values = {"key": key, "capacity": capacity, "rate": refill_per_s, "at": now.timestamp()}
        with self._rates.transaction(write=True) as db:
            if db.execute(_TAKE_TOKEN, values).fetchone() is not None:
                return 0.0
            row = db.execute(_TOKEN_LEVEL, values).fetchone()
        return seconds_until_token(row, refill_per_s)

    def close(self) -> None:
        """Commit queued rows; close this thread's connections (others close with their threads)."""
        self._committer.close()
        self._db.close()
        self._rates.close()


# The token bucket's statements, written once (take_token runs on every issuance).
_TAKE_TOKEN, _TOKEN_LEVEL = bucket_statements(
    lambda name: f":{name}", "min(:capacity, tokens + max(0, :at - updated_at) * :rate)"
)


def _upgrade(db: sqlite3.Connection) -> None:
    # Columns added after a table was first created (CREATE TABLE IF NOT EXISTS leaves an
    # existing table as it is). Rows written before have NULL there.
    columns = {row[1] for row in db.execute("PRAGMA table_info(certificates)")}
    for statement in ledger.add_late_columns(columns):
        db.execute(statement)
    audit = {row[1] for row in db.execute("PRAGMA table_info(audit_log)")}
    for statement in ledger.add_late_audit_columns(audit):
        db.execute(statement)


def _stamp(at: datetime) -> str:
    # Fixed width, so that the text comparison in the purge is a time comparison.
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _node(row: tuple[str, str, str]) -> NodeRecord:
    return NodeRecord(node_id=row[0], owner=row[1], created_at=datetime.fromisoformat(row[2]))
