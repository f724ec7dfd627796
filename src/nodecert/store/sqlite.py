"""SQLite ledger and node directory: one file, WAL mode, safe for several workers.

Each thread gets its own connection. Every write is its own transaction, committed
before the method returns, so a certificate is never handed out without its row.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from nodecert.errors import ConflictError, NotFoundError, StoreUnavailableError
from nodecert.ports import (
    CertificateRecord,
    CertificateStatus,
    NodeRecord,
    Profile,
    RevocationReason,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = 1
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
    renewed_from        TEXT
);
CREATE INDEX IF NOT EXISTS certificates_by_user ON certificates (user_id, created_at);
CREATE INDEX IF NOT EXISTS certificates_by_node ON certificates (node_id, created_at);
"""
_COLUMNS = (
    "serial, user_id, node_id, key_type, not_before, not_after, fingerprint_sha256,"
    " request_id, created_at, status, revoked_at, revocation_reason, profile, renewed_from"
)
_BUSY_TIMEOUT_S = 5.0


class SQLiteStore:
    """Implements ``Ledger`` and ``NodeDirectory`` on one SQLite file.

    Args:
        path: The database file; created (with its schema) when missing.

    Raises:
        StoreUnavailableError: the file cannot be opened, or has a newer schema.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreUnavailableError(
                    f"store: {path} has schema version {version}; this nodecert knows"
                    f" {SCHEMA_VERSION} (upgrade nodecert)"
                )
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # NodeDirectory

    def owner_of(self, node_id: str) -> str | None:
        """The owner of ``node_id``, or None."""
        with self._transaction() as db:
            row = db.execute("SELECT owner FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
        return None if row is None else str(row[0])

    def put_node(self, node_id: str, owner: str, *, at: datetime) -> NodeRecord:
        """Create ``node_id`` or re-assign it to ``owner``."""
        with self._transaction() as db:
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
        with self._transaction() as db:
            return db.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,)).rowcount > 0

    def list_nodes(self, *, owner: str | None = None) -> list[NodeRecord]:
        """All nodes (or ``owner``'s), by node id."""
        query = "SELECT node_id, owner, created_at FROM nodes"
        args: tuple[str, ...] = ()
        if owner is not None:
            query, args = query + " WHERE owner = ?", (owner,)
        with self._transaction() as db:
            return [_node(row) for row in db.execute(query + " ORDER BY node_id", args)]

    # Ledger

    def record(self, record: CertificateRecord) -> None:
        """Commit a new certificate row.

        Raises:
            ConflictError: the serial is already recorded (it is never overwritten).
        """
        values = (
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
        )
        try:
            with self._transaction() as db:
                db.execute(f"INSERT INTO certificates ({_COLUMNS}) VALUES ({_marks(14)})", values)
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"serial: {record.serial} is already recorded") from exc

    def get(self, serial: str) -> CertificateRecord | None:
        """The row for ``serial``, or None."""
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM certificates WHERE serial = ?", (serial,)
            ).fetchone()
        return None if row is None else _certificate(row)

    def find(
        self, *, user_id: str | None = None, node_id: str | None = None
    ) -> list[CertificateRecord]:
        """Rows of a user and/or a node, newest first."""
        clauses, args = [], []
        for column, value in (("user_id", user_id), ("node_id", node_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM certificates{where} ORDER BY created_at DESC", args
            ).fetchall()
        return [_certificate(row) for row in rows]

    def mark_revoked(
        self, serial: str, *, reason: RevocationReason, at: datetime
    ) -> CertificateRecord:
        """Mark ``serial`` revoked; a second call keeps the first time and reason."""
        with self._transaction() as db:
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

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            db = self._connection()
            with db:
                yield db
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise StoreUnavailableError(
                f"store: SQLite error on {self.path.name}: {exc}", retry_after=1
            ) from exc

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
            db.execute("PRAGMA journal_mode = WAL")
            # FULL makes each commit durable before the certificate leaves the process:
            # a kill -9 or power cut must not lose a row the client already has.
            db.execute("PRAGMA synchronous = FULL")
            db.isolation_level = "DEFERRED"
            self._local.db = db
        return db


def _marks(count: int) -> str:
    return ", ".join("?" * count)


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
    )
