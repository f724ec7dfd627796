"""The in-memory reference for a ledger query: order, filter and page rows a store read.

Stores that filter in their database must give what :func:`select_rows` gives over the same
rows (``tests/integration/test_ledger_queries.py`` holds them to it); DynamoDB uses it for
a listing no index serves, and ``nodecert.testing.MemoryStore`` for everything.
"""

from __future__ import annotations

from collections.abc import Iterable

from nodecert.core.values import CertificateQuery, CertificateRecord

__all__ = ["select_rows"]


def select_rows(
    rows: Iterable[CertificateRecord], query: CertificateQuery
) -> list[CertificateRecord]:
    """The rows of ``rows`` that ``query`` asks for: newest first, after its cursor, capped."""
    ordered = sorted(rows, key=lambda row: (row.created_at, row.serial), reverse=True)
    if query.after is not None:
        positions = [i for i, row in enumerate(ordered) if row.serial == query.after]
        ordered = ordered[positions[0] + 1 :] if positions else []
    matching = [row for row in ordered if query.matches(row)]
    return matching if query.limit is None else matching[: query.limit]
