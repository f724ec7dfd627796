"""SQL shared by the SQLite and PostgreSQL stores: schema, columns, row mapping, statements.

The two stores differ only in what a :class:`Dialect` says: how a named parameter is
written, the column type of a time and of an id, and how a time goes in and comes out.
Everything else (the tables, the order of the columns, the mapping between a row and a
:class:`CertificateRecord`, the renewal and revocation transactions) is written once here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from nodecert.core.errors import ConflictError
from nodecert.core.values import (
    CertificateQuery,
    CertificateRecord,
    CertificateStatus,
    Profile,
    RevocationReason,
)

__all__ = [
    "CERTIFICATE_COLUMNS",
    "COLUMNS",
    "Dialect",
    "add_late_columns",
    "bucket_statements",
    "certificate_from_row",
    "certificate_row",
    "certificate_select",
    "certificate_values",
    "insert_certificate",
    "record_successor",
    "schema",
    "seconds_until_token",
]


class Connection(Protocol):
    """What both drivers' connections offer: ``execute`` with named parameters."""

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between SQLite and PostgreSQL.

    Attributes:
        mark: Writes a named parameter (``:name`` or ``%(name)s``).
        time_type: The column type of a time.
        id_type: The column type of an id, which must compare as bytes (as Python does).
        to_time: A UTC datetime as the column stores it.
        from_time: A stored time back as a UTC datetime.
    """

    mark: Callable[[str], str]
    time_type: str
    id_type: str
    to_time: Callable[[datetime], object]
    from_time: Callable[[Any], datetime]


# (name, kind, required): kind "id" and "time" take the dialect's types, "text" is TEXT.
CERTIFICATE_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("serial", "id", True),
    ("user_id", "id", True),
    ("node_id", "id", True),
    ("key_type", "text", True),
    ("not_before", "time", True),
    ("not_after", "time", True),
    ("fingerprint_sha256", "text", True),
    ("request_id", "text", True),
    ("created_at", "time", True),
    ("status", "text", True),
    ("revoked_at", "time", False),
    ("revocation_reason", "text", False),
    ("profile", "text", True),
    ("renewed_from", "text", False),
    ("issuer", "text", False),
    ("dns_names", "text", False),
    ("superseded_by", "text", False),
    ("user_subject", "text", False),
    ("ip_addresses", "text", False),
)
# Columns added to ``certificates`` after its first release; older files and databases
# get them by ALTER TABLE (their rows have NULL there).
_LATE_COLUMNS = ("issuer", "dns_names", "superseded_by", "user_subject", "ip_addresses")
_NAMES = tuple(name for name, _, _ in CERTIFICATE_COLUMNS)
COLUMNS = ", ".join(_NAMES)
"""The certificate columns, in the order :func:`certificate_from_row` reads them."""


def schema(dialect: Dialect) -> str:
    """The tables both stores share (rate buckets aside), as ``CREATE ... IF NOT EXISTS``."""
    t, i = dialect.time_type, dialect.id_type
    types = {"id": i, "time": t, "text": "TEXT"}
    columns = ",\n    ".join(
        f"{name} {types[kind]}{' PRIMARY KEY' if name == 'serial' else ''}"
        f"{' NOT NULL' if required and name != 'serial' else ''}"
        for name, kind, required in CERTIFICATE_COLUMNS
    )
    return f"""
CREATE TABLE IF NOT EXISTS nodes (
    node_id     {i} PRIMARY KEY,
    owner       {i} NOT NULL,
    created_at  {t} NOT NULL
);
CREATE INDEX IF NOT EXISTS nodes_by_owner ON nodes (owner);
CREATE TABLE IF NOT EXISTS certificates (
    {columns}
);
CREATE INDEX IF NOT EXISTS certificates_by_user ON certificates (user_id, created_at);
CREATE INDEX IF NOT EXISTS certificates_by_node ON certificates (node_id, created_at);
CREATE TABLE IF NOT EXISTS used_tokens (
    key         {i} PRIMARY KEY,
    expires_at  {t} NOT NULL
);
CREATE INDEX IF NOT EXISTS used_tokens_by_expiry ON used_tokens (expires_at);
CREATE TABLE IF NOT EXISTS revocation_outbox (
    serial      {i} PRIMARY KEY,
    reason      TEXT NOT NULL,
    issuer      TEXT,
    queued_at   {t} NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    id          {i} PRIMARY KEY,
    at          {t} NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    user_id     TEXT NOT NULL DEFAULT '',
    node_id     TEXT NOT NULL DEFAULT '',
    source      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (at);
"""


def add_late_columns(existing: set[str]) -> list[str]:
    """The ``ALTER TABLE`` statements that bring an older ``certificates`` table up."""
    return [
        f"ALTER TABLE certificates ADD COLUMN {name} TEXT"
        for name in _LATE_COLUMNS
        if name not in existing
    ]


# Columns added to ``audit_log`` after its first release (who and where an entry concerns).
_LATE_AUDIT_COLUMNS = ("user_id", "node_id", "source")


def add_late_audit_columns(existing: set[str]) -> list[str]:
    """The ``ALTER TABLE`` statements that bring an older ``audit_log`` table up."""
    return [
        f"ALTER TABLE audit_log ADD COLUMN {name} TEXT NOT NULL DEFAULT ''"
        for name in _LATE_AUDIT_COLUMNS
        if name not in existing
    ]


def certificate_row(record: CertificateRecord, dialect: Dialect) -> tuple[object, ...]:
    """``record``'s column values, in the order of :data:`COLUMNS`.

    For a positional INSERT (:func:`insert_certificate` with ``positional``): SQLite binds
    a tuple by position in about two thirds of the time it takes to look 19 names up in a
    mapping, on the thread that commits every row.
    """
    time = dialect.to_time
    return (
        record.serial,
        record.user_id,
        record.node_id,
        record.key_type,
        time(record.not_before),
        time(record.not_after),
        record.fingerprint_sha256,
        record.request_id,
        time(record.created_at),
        record.status.value,
        time(record.revoked_at) if record.revoked_at else None,
        record.revocation_reason.value if record.revocation_reason else None,
        record.profile.value,
        record.renewed_from,
        record.issuer,
        # DNS names never contain a comma (validate_dns_names).
        ",".join(record.dns_names) or None,
        record.superseded_by,
        record.user_subject,
        # Normalized IP addresses never contain a comma (validate_ip_addresses).
        ",".join(record.ip_addresses) or None,
    )


def certificate_values(record: CertificateRecord, dialect: Dialect) -> dict[str, object]:
    """``record`` as named parameters, one per column."""
    return dict(zip(_NAMES, certificate_row(record, dialect), strict=True))


def certificate_from_row(row: Sequence[Any], dialect: Dialect) -> CertificateRecord:
    """The record of a row selected as :data:`COLUMNS`."""
    time = dialect.from_time
    values = dict(zip(_NAMES, row, strict=True))
    return CertificateRecord(
        serial=values["serial"],
        user_id=values["user_id"],
        node_id=values["node_id"],
        key_type=values["key_type"],
        not_before=time(values["not_before"]),
        not_after=time(values["not_after"]),
        fingerprint_sha256=values["fingerprint_sha256"],
        request_id=values["request_id"],
        created_at=time(values["created_at"]),
        status=CertificateStatus(values["status"]),
        revoked_at=time(values["revoked_at"]) if values["revoked_at"] else None,
        revocation_reason=(
            RevocationReason(values["revocation_reason"]) if values["revocation_reason"] else None
        ),
        profile=Profile(values["profile"]),
        renewed_from=values["renewed_from"],
        issuer=values["issuer"],
        dns_names=tuple(values["dns_names"].split(",")) if values["dns_names"] else (),
        superseded_by=values["superseded_by"],
        user_subject=values["user_subject"],
        ip_addresses=tuple(values["ip_addresses"].split(",")) if values["ip_addresses"] else (),
    )


def insert_certificate(
    dialect: Dialect, *, or_nothing: bool = False, positional: str | None = None
) -> str:
    """The INSERT of one certificate row (named parameters, see :func:`certificate_values`).

    With ``or_nothing``, a serial that exists inserts nothing (``rowcount`` 0) instead of
    failing. With ``positional`` (the driver's positional mark, ``?``), it takes
    :func:`certificate_row`'s tuple instead.
    """
    marks = [positional] * len(_NAMES) if positional else [dialect.mark(n) for n in _NAMES]
    values = ", ".join(marks)
    tail = " ON CONFLICT (serial) DO NOTHING" if or_nothing else ""
    return f"INSERT INTO certificates ({COLUMNS}) VALUES ({values}){tail}"


def record_successor(db: Connection, record: CertificateRecord, dialect: Dialect) -> None:
    """In the caller's transaction: supersede the predecessor, then insert ``record``.

    The UPDATE takes the predecessor's row lock (PostgreSQL) or runs as the only writer
    (SQLite), so of two racing renewals the second finds it superseded and changes nothing.

    Raises:
        ConflictError: the predecessor is not active, or the serial exists; the caller's
            transaction must roll back (raising out of it does).
    """
    m = dialect.mark
    updated = db.execute(
        f"UPDATE certificates SET status = {m('superseded')}, superseded_by = {m('serial')}"
        f" WHERE serial = {m('predecessor')} AND status = {m('active')}",
        {
            "superseded": CertificateStatus.SUPERSEDED.value,
            "serial": record.serial,
            "predecessor": record.renewed_from,
            "active": CertificateStatus.ACTIVE.value,
        },
    )
    if updated.rowcount != 1:
        raise ConflictError(f"renewal: {record.renewed_from} is not active any more")
    inserted = db.execute(
        insert_certificate(dialect, or_nothing=True), certificate_values(record, dialect)
    )
    if inserted.rowcount != 1:
        raise ConflictError(f"serial: {record.serial} is already recorded")


def certificate_select(
    query: CertificateQuery,
    columns: str,
    *,
    mark: Callable[[str], str],
    time: Callable[[datetime], object],
) -> tuple[str, dict[str, object]]:
    """The SELECT of ``query`` over table ``certificates``, and its named parameters.

    Filters, the keyset cursor (``after``), the order (newest first, ties by serial) and
    the limit are all done by the database. ``mark`` writes a named placeholder in the
    driver's style; ``time`` turns ``query.now`` into the value its column compares with.
    """
    clauses: list[str] = []
    args: dict[str, object] = {}
    for column, value in (
        ("user_id", query.user_id),
        ("node_id", query.node_id),
        ("profile", query.profile.value if query.profile else None),
    ):
        if value is not None:
            clauses.append(f"{column} = {mark(column)}")
            args[column] = value
    if query.status is not None and query.now is not None:
        args["revoked"] = CertificateStatus.REVOKED.value
        args["active"] = CertificateStatus.ACTIVE.value
        args["superseded"] = CertificateStatus.SUPERSEDED.value
        args["now"] = time(query.now)
        revoked, active, now = mark("revoked"), mark("active"), mark("now")
        superseded = mark("superseded")
        clauses.append(
            {
                CertificateStatus.REVOKED: f"status = {revoked}",
                CertificateStatus.ACTIVE: f"status = {active} AND not_after > {now}",
                CertificateStatus.SUPERSEDED: f"status = {superseded} AND not_after > {now}",
                CertificateStatus.EXPIRED: (
                    f"status IN ({active}, {superseded}) AND not_after <= {now}"
                ),
            }[query.status]
        )
    if query.after is not None:
        # An unknown cursor gives NULL, and no rows, as select_rows does.
        clauses.append(
            "(created_at, serial) < (SELECT created_at, serial FROM certificates"
            f" WHERE serial = {mark('after')})"
        )
        args["after"] = query.after
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    limit = ""
    if query.limit is not None:
        limit, args["limit"] = f" LIMIT {mark('limit')}", query.limit
    sql = f"SELECT {columns} FROM certificates{where} ORDER BY created_at DESC, serial DESC{limit}"
    return sql, args


def bucket_statements(mark: Callable[[str], str], refill: str) -> tuple[str, str]:
    """The token-bucket UPSERT (take one token, or nothing) and the look at what is left.

    One UPSERT reads, refills and takes, so concurrent writers can never both spend the
    last token; it returns a row only when a token was taken. ``refill`` is the dialect's
    expression of the refilled level (parameters ``capacity``, ``at`` and ``rate``).
    """
    take = (
        "INSERT INTO rate_buckets (key, tokens, updated_at)"
        f" VALUES ({mark('key')}, {mark('capacity')} - 1, {mark('at')})"
        f" ON CONFLICT (key) DO UPDATE SET tokens = {refill} - 1, updated_at = {mark('at')}"
        f" WHERE {refill} >= 1"
        " RETURNING tokens"
    )
    return take, f"SELECT {refill} FROM rate_buckets WHERE key = {mark('key')}"


def seconds_until_token(level: tuple[Any, ...] | None, refill_per_s: float) -> float:
    """How long until the bucket whose refilled ``level`` row was read holds a token."""
    available = float(level[0]) if level else 0.0
    return (1.0 - available) / refill_per_s if refill_per_s > 0 else float("inf")
