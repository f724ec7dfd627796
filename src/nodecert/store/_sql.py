"""SQL shared by the SQLite and PostgreSQL stores: the certificate listing query."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from nodecert.core.ports import CertificateQuery, CertificateStatus

__all__ = ["bucket_statements", "certificate_select", "seconds_until_token"]


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
        args["now"] = time(query.now)
        revoked, active, now = mark("revoked"), mark("active"), mark("now")
        clauses.append(
            {
                CertificateStatus.REVOKED: f"status = {revoked}",
                CertificateStatus.ACTIVE: f"status = {active} AND not_after > {now}",
                CertificateStatus.EXPIRED: f"status = {active} AND not_after <= {now}",
            }[query.status]
        )
    if query.after is not None:
        # An unknown cursor gives NULL, and no rows, as query_rows does.
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
