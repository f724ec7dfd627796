"""SQLite ledger and node directory: one file, WAL mode, safe for several workers.

Each thread gets its own connection. Every write is committed before the method returns,
so a certificate is never handed out without its row; certificate rows from concurrent
requests share one commit (``groupcommit``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

from nodecert.core.errors import ConflictError, NotFoundError, StoreUnavailableError
from nodecert.core.ports import (
    CertificateQuery,
    CertificateRecord,
    CertificateStatus,
    NodeRecord,
    Profile,
    RevocationReason,
)
from nodecert.store._sql import bucket_statements, certificate_select, seconds_until_token
from nodecert.store.groupcommit import GroupCommitter
from nodecert.store.sqlite_file import SQLiteFile

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

# Version 2 added used_tokens (single-use renewal token ids), version 3 rate_buckets
# (issuance quotas, since moved to a file of their own), version 4 certificates.issuer (the
# CA that signed). CREATE TABLE IF NOT EXISTS and _upgrade bring older files up in place.
SCHEMA_VERSION = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    node_id     TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS nodes_by_owner ON nodes (owner);
CREATE TABLE IF NOT EXISTS certificates (
    serial              TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    node_id             TEXT NOT NULL,
    key_type            TEXT NOT NULL,
    not_before          TEXT NOT NULL,
    not_after           TEXT NOT NULL,
    fingerprint_sha256  TEXT NOT NULL,
    request_id          TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    status              TEXT NOT NULL,
    revoked_at          TEXT,
    revocation_reason   TEXT,
    profile             TEXT NOT NULL,
    renewed_from        TEXT,
    issuer              TEXT
);
CREATE INDEX IF NOT EXISTS certificates_by_user ON certificates (user_id, created_at);
CREATE INDEX IF NOT EXISTS certificates_by_node ON certificates (node_id, created_at);
CREATE TABLE IF NOT EXISTS used_tokens (
    key         TEXT PRIMARY KEY,
    expires_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS used_tokens_by_expiry ON used_tokens (expires_at);
"""
# Rate buckets live in a file of their own, written without fsync: a bucket write must
# never queue behind a ledger commit that is waiting for the disk.
_RATES_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_buckets (
    key         TEXT PRIMARY KEY,
    tokens      REAL NOT NULL,
    updated_at  REAL NOT NULL
);
"""
_COLUMNS = (
    "serial, user_id, node_id, key_type, not_before, not_after, fingerprint_sha256,"
    " request_id, created_at, status, revoked_at, revocation_reason, profile, renewed_from,"
    " issuer"
)
_INSERT_CERTIFICATE = (
    f"INSERT INTO certificates ({_COLUMNS}) VALUES ({', '.join('?' * len(_COLUMNS.split(',')))})"
)
_BUSY_TIMEOUT_S = 5.0


class SQLiteStore:
    """The ledger, node directory, used tokens and rate buckets, in SQLite files.

    Implements ``Ledger`` (with ``DeferredLedger`` and ``LedgerQueries``),
    ``NodeDirectory``, ``ReplayGuard`` and ``RateLimiter``.

    Args:
        path: The database file; created (with its schema) when missing. Rate buckets go
            to a second file beside it (``<name>-rates<suffix>``).
        busy_timeout_s: How long a write waits for another writer's lock before the
            store reports itself unavailable (503).
        synchronous: ``full`` (default) makes every commit durable on disk before it
            returns: a certificate is never handed out whose row a power cut could lose.
            ``normal`` (WAL) skips that fsync: commits survive a crash or ``kill -9`` of
            nodecert but not of the machine, and issuance is much faster
            (docs/performance.md).

    Raises:
        StoreUnavailableError: the file cannot be opened, or has a newer schema.
    """

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
        self._committer = GroupCommitter(self._commit_rows, name="nodecert-ledger-commit")
        try:
            with self._db.transaction(write=True) as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreUnavailableError(
                        f"store: {path} has schema version {version}; this nodecert knows"
                        f" {SCHEMA_VERSION} (upgrade nodecert)"
                    )
                db.executescript(_SCHEMA)
                _upgrade(db)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            with self._rates.transaction(write=True) as db:
                db.executescript(_RATES_SCHEMA)
        except StoreUnavailableError:
            self.close()
            raise

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

    def record(self, record: CertificateRecord) -> None:
        """Commit a new certificate row.

        Raises:
            ConflictError: the serial is already recorded (it is never overwritten).
            StoreUnavailableError: the row could not be committed.
        """
        self.record_deferred(record).result()

    def record_deferred(self, record: CertificateRecord) -> Future[None]:
        """Queue a new certificate row for the next group commit (``DeferredLedger``).

        The future completes once the row is durable, or fails with the error
        :meth:`record` would raise. Rows from every thread of this process share commits,
        so concurrent issuances pay for one fsync between them.
        """
        return self._committer.submit(_row(record))

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
                f"SELECT {_COLUMNS} FROM certificates WHERE serial = ?", (serial,)
            ).fetchone()
        return None if row is None else _certificate(row)

    def find(
        self, *, user_id: str | None = None, node_id: str | None = None
    ) -> list[CertificateRecord]:
        """Rows of a user and/or a node, newest first."""
        return self.query(CertificateQuery(user_id=user_id, node_id=node_id))

    def query(self, query: CertificateQuery) -> list[CertificateRecord]:
        """The rows ``query`` asks for, filtered, ordered and paged in SQL (``LedgerQueries``)."""
        # ISO 8601 UTC text sorts as time does (see _row), so expiry is a text comparison.
        sql, args = certificate_select(
            query,
            _COLUMNS,
            mark=lambda name: f":{name}",
            time=lambda at: at.astimezone(UTC).isoformat(),
        )
        with self._db.transaction() as db:
            rows = db.execute(sql, args).fetchall()
        return [_certificate(row) for row in rows]

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
                f"SELECT {_COLUMNS} FROM certificates WHERE serial = ?", (serial,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"serial: no certificate {serial}")
        return _certificate(row)

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

    def take_token(self, key: str, *, capacity: float, refill_per_s: float, now: datetime) -> float:
        """Take one token from bucket ``key`` (a ``RateLimiter``); 0.0 when granted.

        One UPSERT does the read, the refill and the take, so concurrent workers can never
        both spend the last token.
        """
        at = now.timestamp()
        refill = "min(:capacity, tokens + max(0, :at - updated_at) * :rate)"
        values = {"key": key, "capacity": capacity, "rate": refill_per_s, "at": at}
        take, level = bucket_statements(lambda name: f":{name}", refill)
        with self._rates.transaction(write=True) as db:
            if db.execute(take, values).fetchone() is not None:
                return 0.0
            row = db.execute(level, values).fetchone()
        return seconds_until_token(row, refill_per_s)

    def close(self) -> None:
        """Commit queued rows; close this thread's connections (others close with their threads)."""
        self._committer.close()
        self._db.close()
        self._rates.close()


def _upgrade(db: sqlite3.Connection) -> None:
    # Columns added after a table was first created (CREATE TABLE IF NOT EXISTS leaves an
    # existing table as it is). Rows written before have NULL there.
    columns = {row[1] for row in db.execute("PRAGMA table_info(certificates)")}
    if "issuer" not in columns:
        db.execute("ALTER TABLE certificates ADD COLUMN issuer TEXT")


def _stamp(at: datetime) -> str:
    # Fixed width, so that the text comparison in the purge is a time comparison.
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _row(record: CertificateRecord) -> tuple[object, ...]:
    # Times are isoformat() of UTC datetimes: "...:SS+00:00" or "...:SS.ffffff+00:00".
    # Text order is time order ("+" sorts before "."), which ORDER BY and query() rely on.
    return (
        record.serial,
        record.user_id,
        record.node_id,
        record.key_type,
        record.not_before.isoformat(),
        record.not_after.isoformat(),
        record.fingerprint_sha256,
        record.request_id,
        record.created_at.isoformat(),
        record.status.value,
        record.revoked_at.isoformat() if record.revoked_at else None,
        record.revocation_reason.value if record.revocation_reason else None,
        record.profile.value,
        record.renewed_from,
        record.issuer,
    )


def _node(row: tuple[str, str, str]) -> NodeRecord:
    return NodeRecord(node_id=row[0], owner=row[1], created_at=datetime.fromisoformat(row[2]))


def _certificate(row: tuple[str, ...]) -> CertificateRecord:
    return CertificateRecord(
        serial=row[0],
        user_id=row[1],
        node_id=row[2],
        key_type=row[3],
        not_before=datetime.fromisoformat(row[4]),
        not_after=datetime.fromisoformat(row[5]),
        fingerprint_sha256=row[6],
        request_id=row[7],
        created_at=datetime.fromisoformat(row[8]),
        status=CertificateStatus(row[9]),
        revoked_at=datetime.fromisoformat(row[10]) if row[10] else None,
        revocation_reason=RevocationReason(row[11]) if row[11] else None,
        profile=Profile(row[12]),
        renewed_from=row[13],
        issuer=row[14],
    )
