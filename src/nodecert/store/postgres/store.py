"""PostgreSQL ledger, node directory, used tokens and rate buckets (several servers, one database).

The same behaviour as :mod:`nodecert.store.sqlite.store`, for nodecert servers behind a load
balancer that share one database. Connections come from a ``psycopg_pool`` pool and run
in autocommit mode: every method is one statement, or one explicit transaction, that is
committed before it returns, so a certificate is never handed out without its row.

Every psycopg error becomes a :class:`StoreUnavailableError` (503 with ``Retry-After``);
a duplicate serial or a used token is a :class:`ConflictError`, as in SQLite. Messages
never contain the connection string: it usually holds the password.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.errors
from psycopg_pool import ConnectionPool

from nodecert.core.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    StoreUnavailableError,
)
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
from nodecert.store.postgres.schema import POSTGRES as _POSTGRES
from nodecert.store.postgres.schema import SCHEMA_VERSION, create_schema
from nodecert.store.sql import ledger, outbox
from nodecert.store.sql.ledger import (
    COLUMNS,
    bucket_statements,
    certificate_from_row,
    certificate_select,
    certificate_values,
    insert_certificate,
    seconds_until_token,
)

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

log = logging.getLogger("nodecert.store")

_INSERT_CERTIFICATE = insert_certificate(_POSTGRES)
_TIMEOUT_S = 5.0


# The token bucket's statements, written once.
_TAKE_TOKEN, _TOKEN_LEVEL = bucket_statements(
    lambda name: f"%({name})s",
    "LEAST(%(capacity)s, rate_buckets.tokens"
    " + GREATEST(0, %(at)s - rate_buckets.updated_at) * %(rate)s)",
)


class PostgresStore:
    """The ledger, node directory, used tokens and rate buckets, in PostgreSQL.

    Implements ``Ledger``, ``NodeDirectory``, ``RevocationOutbox``,
    ``AuditTrail``, ``ReplayGuard`` and ``RateLimiter``. The tables are created on start
    (``CREATE TABLE IF NOT EXISTS``, then the columns an older database lacks) under an
    advisory lock, so servers that start together do not race.

    Args:
        dsn: A libpq connection string or ``postgresql://`` URL. It is a secret (it
            usually carries the password) and never appears in an error or a log line.
        min_size: Connections the pool keeps open.
        max_size: Most connections the pool opens (one per concurrent request).
        timeout_s: How long a request waits for a pooled connection, and how long one
            statement may run, before the store reports itself unavailable (503).

    Raises:
        ConfigurationError: ``dsn`` is not a connection string.
        StoreUnavailableError: the database cannot be reached, or has a newer schema.
    """

    never_waits = False  # A database server: every write waits on the network.

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = _TIMEOUT_S
    ) -> None:
        try:
            password = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
        except psycopg.Error:
            # Not "from exc": libpq quotes the malformed part, which may be the password.
            raise ConfigurationError(
                "NODECERT_DATABASE_URL: not a libpq connection string or postgresql:// URL"
            ) from None
        self._secret = str(password) if password else None
        self._timeout_ms = max(1, round(timeout_s * 1000))
        self._create_schema(dsn, timeout_s)
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            kwargs={"autocommit": True, "connect_timeout": max(2, round(timeout_s))},
            configure=self._configure,
            open=False,
            name="nodecert-store",
        )
        # Connections are made in the pool's background threads: start does not wait.
        self._pool.open(wait=False)

    def _create_schema(self, dsn: str, timeout_s: float) -> None:
        try:
            with psycopg.connect(dsn, connect_timeout=max(2, round(timeout_s))) as db:
                self._configure(db)
                create_schema(db)
        except psycopg.Error as exc:
            raise self._unavailable(exc, "start") from exc

    def _configure(self, db: psycopg.Connection[Any]) -> None:
        # UTC sessions return UTC datetimes; a statement stuck on a lock fails in time
        # instead of holding a request (and a pooled connection) for ever.
        db.autocommit = True
        db.execute("SET TIME ZONE 'UTC'")
        db.execute(f"SET statement_timeout = {self._timeout_ms}")

    @contextmanager
    def _connection(
        self, action: str, *, conflict: str | None = None
    ) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled connection; psycopg errors become nodecert errors.

        Raises:
            ConflictError: a unique key clashed and ``conflict`` says what that means.
            StoreUnavailableError: any other database, network or pool error.
        """
        try:
            with self._pool.connection() as db:
                yield db
        except psycopg.errors.UniqueViolation as exc:
            if conflict is None:
                raise self._unavailable(exc, action) from exc
            raise ConflictError(conflict) from exc
        except psycopg.Error as exc:
            raise self._unavailable(exc, action) from exc

    def _unavailable(self, exc: psycopg.Error, action: str) -> StoreUnavailableError:
        # The caller sees the kind of failure; the log gets libpq's words (host, port,
        # server message) with the password blanked out, should libpq ever quote it.
        reason = str(exc)
        if self._secret:
            reason = reason.replace(self._secret, "***")
        log.warning("store: PostgreSQL %s failed: %s", action, reason)
        state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
        return StoreUnavailableError(
            f"store: PostgreSQL {action} failed: {type(exc).__name__}{state}", retry_after=1
        )

    # NodeDirectory

    def owner_of(self, node_id: str) -> str | None:
        """The owner of ``node_id``, or None."""
        with self._connection("read") as db:
            row = db.execute("SELECT owner FROM nodes WHERE node_id = %s", (node_id,)).fetchone()
        return None if row is None else str(row[0])

    def put_node(self, node_id: str, owner: str, *, at: datetime) -> NodeRecord:
        """Create ``node_id`` or re-assign it to ``owner`` (keeping its creation time)."""
        with self._connection("write") as db:
            row = db.execute(
                "INSERT INTO nodes (node_id, owner, created_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (node_id) DO UPDATE SET owner = excluded.owner"
                " RETURNING node_id, owner, created_at",
                (node_id, owner, at),
            ).fetchone()
        assert row is not None  # INSERT ... RETURNING always returns the row.
        return _node(row)

    def delete_node(self, node_id: str) -> bool:
        """Remove ``node_id``; False when there was no such node."""
        with self._connection("write") as db:
            return db.execute("DELETE FROM nodes WHERE node_id = %s", (node_id,)).rowcount > 0

    def list_nodes(self, *, owner: str | None = None) -> list[NodeRecord]:
        """All nodes (or ``owner``'s), by node id."""
        query = "SELECT node_id, owner, created_at FROM nodes"
        args: tuple[str, ...] = ()
        if owner is not None:
            query, args = query + " WHERE owner = %s", (owner,)
        with self._connection("read") as db:
            rows = db.execute(query + " ORDER BY node_id", args).fetchall()
        return [_node(row) for row in rows]

    # Ledger

    def record(self, record: CertificateRecord) -> Commit:
        """Commit a new certificate row before returning (the commit returned is done).

        Raises:
            ConflictError: the serial is already recorded (it is never overwritten).
            StoreUnavailableError: the row could not be committed.
        """
        conflict = f"serial: {record.serial} is already recorded"
        with self._connection("write", conflict=conflict) as db:
            db.execute(_INSERT_CERTIFICATE, certificate_values(record, _POSTGRES))
        return Commit.done()

    def get(self, serial: str) -> CertificateRecord | None:
        """The row for ``serial``, or None."""
        with self._connection("read") as db:
            row = db.execute(
                f"SELECT {COLUMNS} FROM certificates WHERE serial = %s", (serial,)
            ).fetchone()
        return None if row is None else certificate_from_row(row, _POSTGRES)

    def find(
        self, *, user_id: str | None = None, node_id: str | None = None
    ) -> list[CertificateRecord]:
        """Rows of a user and/or a node, newest first."""
        return self.query(CertificateQuery(user_id=user_id, node_id=node_id))

    def query(self, query: CertificateQuery) -> list[CertificateRecord]:
        """The rows ``query`` asks for, filtered, ordered and paged in SQL."""
        sql, args = certificate_select(
            query, COLUMNS, mark=lambda name: f"%({name})s", time=lambda at: at
        )
        with self._connection("read") as db:
            rows = db.execute(sql, args).fetchall()
        return [certificate_from_row(row, _POSTGRES) for row in rows]

    def mark_revoked(
        self, serial: str, *, reason: RevocationReason, at: datetime
    ) -> CertificateRecord:
        """Mark ``serial`` revoked; a second call keeps the first time and reason.

        Raises:
            NotFoundError: no certificate has this serial.
            StoreUnavailableError: the database cannot answer now.
        """
        revoked = CertificateStatus.REVOKED.value
        with self._connection("write") as db:
            # The row lock makes a concurrent second UPDATE re-check the status and skip.
            row = db.execute(
                "UPDATE certificates SET status = %s, revoked_at = %s, revocation_reason = %s"
                f" WHERE serial = %s AND status != %s RETURNING {COLUMNS}",
                (revoked, at, reason.value, serial, revoked),
            ).fetchone()
            if row is None:
                row = db.execute(
                    f"SELECT {COLUMNS} FROM certificates WHERE serial = %s", (serial,)
                ).fetchone()
        if row is None:
            raise NotFoundError(f"serial: no certificate {serial}")
        return certificate_from_row(row, _POSTGRES)

    def record_successor(self, record: CertificateRecord) -> None:
        """Commit ``record`` and supersede ``record.renewed_from``, in one transaction.

        Raises:
            ConflictError: the predecessor is not active any more, or the serial exists.
            StoreUnavailableError: the database cannot answer now.
        """
        with self._connection("write") as db, db.transaction():
            ledger.record_successor(db, record, _POSTGRES)

    # RevocationOutbox

    def revoke_and_queue(
        self, serials: Sequence[str], *, reason: RevocationReason, at: datetime
    ) -> list[CertificateRecord]:
        """Revoke the live rows of ``serials`` and queue their CA revocations, in one
        transaction; return the rows this call revoked."""
        with self._connection("write") as db, db.transaction():
            return outbox.revoke_and_queue(db, serials, reason=reason, at=at, dialect=_POSTGRES)

    def pending_revocations(self, *, limit: int) -> list[PendingRevocation]:
        """Up to ``limit`` queued CA revocations, oldest first."""
        with self._connection("read") as db:
            return outbox.pending_revocations(db, limit=limit, dialect=_POSTGRES)

    def revocation_sent(self, serial: str) -> None:
        """Take ``serial`` off the CA revocation queue."""
        with self._connection("write") as db:
            outbox.revocation_sent(db, serial, _POSTGRES)

    def count_pending_revocations(self) -> int:
        """How many CA revocations are queued."""
        with self._connection("read") as db:
            return outbox.count_pending(db)

    # AuditTrail

    def append_audit(self, entry: AuditEntry) -> None:
        """Record an administrative action (committed before this returns)."""
        with self._connection("write") as db:
            outbox.insert_audit(db, entry, _POSTGRES)

    def audit_entries(
        self, *, limit: int = 100, query: AuditQuery | None = None
    ) -> list[AuditEntry]:
        """The most recent audit entries ``query`` selects, newest first."""
        with self._connection("read") as db:
            return outbox.audit_entries(db, query or AuditQuery(limit=limit), dialect=_POSTGRES)

    # ReplayGuard

    def use_once(self, key: str, *, expires_at: datetime, now: datetime | None = None) -> None:
        """Record ``key`` as used until ``expires_at``; expired keys are purged first.

        Raises:
            ConflictError: ``key`` is already recorded and has not expired.
            StoreUnavailableError: the database cannot answer now.
        """
        purge_before = now or datetime.now(UTC)
        with self._connection("write", conflict="token: already used") as db, db.transaction():
            db.execute("DELETE FROM used_tokens WHERE expires_at < %s", (purge_before,))
            db.execute(
                "INSERT INTO used_tokens (key, expires_at) VALUES (%s, %s)", (key, expires_at)
            )

    def release(self, key: str, *, expires_at: datetime) -> None:
        """Forget ``key`` if it is recorded until exactly ``expires_at`` (a ``ReplayGuard``).

        Raises:
            StoreUnavailableError: the database cannot answer now.
        """
        with self._connection("write") as db:
            db.execute(
                "DELETE FROM used_tokens WHERE key = %s AND expires_at = %s", (key, expires_at)
            )

    # RateLimiter

    def take_token(self, key: str, *, capacity: float, refill_per_s: float, now: datetime) -> float:
        """Take one token from bucket ``key`` (a ``RateLimiter``); 0.0 when granted.

        One UPSERT does the read, the refill and the take, so concurrent servers can never
        both spend the last token.

        Raises:
            StoreUnavailableError: the database cannot answer now.
        """
        values = {
            "key": key,
            "capacity": float(capacity),
            "rate": float(refill_per_s),
            "at": now.timestamp(),
        }
        with self._connection("write") as db:
            if db.execute(_TAKE_TOKEN, values).fetchone() is not None:
                return 0.0
            row = db.execute(_TOKEN_LEVEL, values).fetchone()
        return seconds_until_token(row, refill_per_s)

    def close(self) -> None:
        """Close the pool: its connections and its threads. Closing twice is harmless."""
        self._pool.close()


def _node(row: tuple[Any, ...]) -> NodeRecord:
    return NodeRecord(node_id=row[0], owner=row[1], created_at=row[2])
