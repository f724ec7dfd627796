"""SQL shared by the SQLite and PostgreSQL stores: the revocation outbox and the audit log.

Each function runs in the caller's connection (and transaction, where it says so), with the
caller's :class:`~nodecert.store.sql.ledger.Dialect`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from nodecert.core.values import (
    AuditEntry,
    AuditQuery,
    CertificateRecord,
    CertificateStatus,
    PendingRevocation,
    RevocationReason,
)
from nodecert.store.sql.ledger import COLUMNS, Connection, Dialect, certificate_from_row

__all__ = [
    "audit_entries",
    "count_pending",
    "insert_audit",
    "pending_revocations",
    "revocation_sent",
    "revoke_and_queue",
]


def revoke_and_queue(
    db: Connection,
    serials: Sequence[str],
    *,
    reason: RevocationReason,
    at: datetime,
    dialect: Dialect,
) -> list[CertificateRecord]:
    """In the caller's transaction: revoke the live rows of ``serials``, queue each for the CA."""
    m = dialect.mark
    revoked: list[CertificateRecord] = []
    for serial in serials:
        row = db.execute(
            f"UPDATE certificates SET status = {m('revoked')}, revoked_at = {m('at')},"
            f" revocation_reason = {m('reason')}"
            f" WHERE serial = {m('serial')} AND status IN ({m('active')}, {m('superseded')})"
            f" RETURNING {COLUMNS}",
            {
                "revoked": CertificateStatus.REVOKED.value,
                "at": dialect.to_time(at),
                "reason": reason.value,
                "serial": serial,
                "active": CertificateStatus.ACTIVE.value,
                "superseded": CertificateStatus.SUPERSEDED.value,
            },
        ).fetchone()
        if row is None:
            continue
        record = certificate_from_row(row, dialect)
        db.execute(
            "INSERT INTO revocation_outbox (serial, reason, issuer, queued_at)"
            f" VALUES ({m('serial')}, {m('reason')}, {m('issuer')}, {m('at')})"
            " ON CONFLICT (serial) DO NOTHING",
            {
                "serial": serial,
                "reason": reason.value,
                "issuer": record.issuer,
                "at": dialect.to_time(at),
            },
        )
        revoked.append(record)
    return revoked


def pending_revocations(db: Connection, *, limit: int, dialect: Dialect) -> list[PendingRevocation]:
    """Up to ``limit`` queued CA revocations, oldest first."""
    rows = db.execute(
        "SELECT serial, reason, issuer, queued_at FROM revocation_outbox"
        f" ORDER BY queued_at, serial LIMIT {dialect.mark('limit')}",
        {"limit": limit},
    ).fetchall()
    return [
        PendingRevocation(
            serial=row[0],
            reason=RevocationReason(row[1]),
            issuer=row[2],
            queued_at=dialect.from_time(row[3]),
        )
        for row in rows
    ]


def revocation_sent(db: Connection, serial: str, dialect: Dialect) -> None:
    """Take ``serial`` off the queue."""
    db.execute(
        f"DELETE FROM revocation_outbox WHERE serial = {dialect.mark('serial')}",
        {"serial": serial},
    )


def count_pending(db: Connection) -> int:
    """How many CA revocations are queued."""
    return int(db.execute("SELECT COUNT(*) FROM revocation_outbox").fetchone()[0])


def insert_audit(db: Connection, entry: AuditEntry, dialect: Dialect) -> None:
    """Append ``entry`` to the audit log."""
    m = dialect.mark
    db.execute(
        "INSERT INTO audit_log (id, at, actor, action, target, detail, user_id, node_id, source)"
        f" VALUES ({m('id')}, {m('at')}, {m('actor')}, {m('action')}, {m('target')},"
        f" {m('detail')}, {m('user_id')}, {m('node_id')}, {m('source')})",
        {
            # Time-ordered, so that entries of the same microsecond keep their order.
            "id": f"{entry.at.timestamp():017.6f}-{uuid.uuid4().hex}",
            "at": dialect.to_time(entry.at),
            "actor": entry.actor,
            "action": entry.action,
            "target": entry.target,
            "detail": entry.detail,
            "user_id": entry.user_id,
            "node_id": entry.node_id,
            "source": entry.source,
        },
    )


def audit_entries(db: Connection, query: AuditQuery, *, dialect: Dialect) -> list[AuditEntry]:
    """The most recent audit entries ``query`` selects, newest first."""
    m = dialect.mark
    where: list[str] = []
    values: dict[str, object] = {"limit": query.limit}
    for column, value in (("user_id", query.user_id), ("node_id", query.node_id)):
        if value is not None:
            where.append(f"{column} = {m(column)}")
            values[column] = value
    if query.action is not None and query.action.endswith("."):
        # A prefix: compared as a range, so no LIKE wildcard in it can widen the match.
        where.append(f"action >= {m('action')} AND action < {m('action_end')}")
        values["action"], values["action_end"] = query.action, query.action[:-1] + "/"
    elif query.action is not None:
        where.append(f"action = {m('action')}")
        values["action"] = query.action
    if query.since is not None:
        where.append(f"at >= {m('since')}")
        values["since"] = dialect.to_time(query.since)
    if query.until is not None:
        where.append(f"at < {m('until')}")
        values["until"] = dialect.to_time(query.until)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = db.execute(
        "SELECT at, actor, action, target, detail, user_id, node_id, source FROM audit_log"
        f"{clause} ORDER BY at DESC, id DESC LIMIT {m('limit')}",
        values,
    ).fetchall()
    return [
        AuditEntry(
            at=dialect.from_time(row[0]),
            actor=row[1],
            action=row[2],
            target=row[3],
            detail=row[4],
            user_id=row[5],
            node_id=row[6],
            source=row[7],
        )
        for row in rows
    ]
