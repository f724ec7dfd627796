"""Ledger queries (filter, order, page in the store) on every store, against one reference.

The same rows go into SQLite, DynamoDB (moto server), PostgreSQL (a throwaway cluster) and
the shipped fake (``nodecert.testing.MemoryStore``); every query must return what the
reference ``select_rows`` computes over the rows, and walking the pages must give the
whole listing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nodecert.core.values import (
    CertificateQuery,
    CertificateRecord,
    CertificateStatus,
    Profile,
    RevocationReason,
)
from nodecert.store.dynamodb.store import DynamoDBStore, create_tables
from nodecert.store.memory_query import select_rows
from nodecert.store.postgres.store import PostgresStore
from nodecert.store.sqlite.store import SQLiteStore
from nodecert.testing import MemoryStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=10)


def _rows() -> list[CertificateRecord]:
    """Two users, three nodes; active, superseded, expired and revoked rows; both profiles."""
    rows = []
    for i in range(36):
        created = T0 + timedelta(hours=i, microseconds=7 * i)
        lifetime = timedelta(days=12 if i % 3 else 5)  # Every third one expired at NOW.
        row = CertificateRecord(
            serial=f"{0x1000 + i * 37:x}",
            user_id="alice" if i % 4 else "bob",
            node_id=f"n{i % 3}",
            key_type="ec-p256",
            not_before=created,
            not_after=created + lifetime,
            fingerprint_sha256=f"{i:064x}",
            request_id=f"r{i}",
            created_at=created,
            profile=Profile.NODE if i % 7 == 0 else Profile.CLIENT,
        )
        if i % 5 == 0:
            row = replace(
                row,
                status=CertificateStatus.REVOKED,
                revoked_at=created + timedelta(hours=1),
                revocation_reason=RevocationReason.SUPERSEDED,
            )
        elif i % 5 == 2:
            row = replace(row, status=CertificateStatus.SUPERSEDED, superseded_by=f"{i:x}")
        rows.append(row)
    return rows


def _fill(store: Any) -> None:
    for row in _rows():
        if row.status is not CertificateStatus.REVOKED:
            store.record(row).wait()  # Active, or superseded as its successor left it.
            continue
        store.record(
            replace(row, status=CertificateStatus.ACTIVE, revoked_at=None, revocation_reason=None)
        ).wait()
        assert row.revoked_at is not None and row.revocation_reason is not None
        store.mark_revoked(row.serial, reason=row.revocation_reason, at=row.revoked_at)


@pytest.fixture(
    params=["sqlite", "dynamodb", pytest.param("postgres", marks=pytest.mark.postgres), "memory"]
)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        memory = MemoryStore()
        _fill(memory)
        yield memory
        return
    if request.param == "sqlite":
        store: Any = SQLiteStore(tmp_path / "ledger.db")
        _fill(store)
        yield store
        store.close()
        return
    if request.param == "postgres":
        store = PostgresStore(request.getfixturevalue("postgres_dsn"))
        _fill(store)
        yield store
        store.close()
        return
    aws_client: Callable[[str], Any] = request.getfixturevalue("aws_client")
    unique: str = request.getfixturevalue("unique")
    client = aws_client("dynamodb")
    nodes, certificates = f"nodes-{unique}", f"certificates-{unique}"
    create_tables(client, nodes_table=nodes, certificates_table=certificates)
    store = DynamoDBStore(client, nodes_table=nodes, certificates_table=certificates)
    _fill(store)
    yield store
    for table in (nodes, certificates):
        client.delete_table(TableName=table)


QUERIES = [
    CertificateQuery(),
    CertificateQuery(user_id="alice"),
    CertificateQuery(user_id="bob", node_id="n0"),
    CertificateQuery(node_id="n2"),
    CertificateQuery(user_id="alice", status=CertificateStatus.ACTIVE, now=NOW),
    CertificateQuery(user_id="alice", status=CertificateStatus.EXPIRED, now=NOW),
    CertificateQuery(user_id="alice", status=CertificateStatus.REVOKED, now=NOW),
    CertificateQuery(user_id="alice", status=CertificateStatus.SUPERSEDED, now=NOW),
    CertificateQuery(node_id="n2", status=CertificateStatus.SUPERSEDED, now=NOW),
    CertificateQuery(status=CertificateStatus.SUPERSEDED, now=NOW),
    CertificateQuery(status=CertificateStatus.REVOKED, now=NOW),
    CertificateQuery(
        user_id="alice",
        node_id="n1",
        status=CertificateStatus.ACTIVE,
        now=NOW,
        profile=Profile.CLIENT,
    ),
    CertificateQuery(node_id="n0", profile=Profile.NODE),
    CertificateQuery(user_id="carol"),
]


@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_every_store_answers_like_the_reference(ledger: Any, query: CertificateQuery) -> None:
    expected = select_rows(_rows(), query)
    assert [r.serial for r in ledger.query(query)] == [r.serial for r in expected]
    assert ledger.query(query) == expected  # Every field, revocations included.


@pytest.mark.parametrize("size", [1, 4, 7, 100])
@pytest.mark.parametrize(
    "query",
    [
        CertificateQuery(user_id="alice"),
        CertificateQuery(user_id="alice", status=CertificateStatus.ACTIVE, now=NOW),
        CertificateQuery(node_id="n1", status=CertificateStatus.EXPIRED, now=NOW),
    ],
    ids=str,
)
def test_walking_the_pages_gives_the_whole_listing(
    ledger: Any, query: CertificateQuery, size: int
) -> None:
    whole = [r.serial for r in select_rows(_rows(), query)]
    walked: list[str] = []
    after = None
    for _ in range(len(whole) + 2):
        page = ledger.query(replace(query, limit=size, after=after))
        assert len(page) <= size
        walked += [r.serial for r in page]
        if len(page) < size:
            break
        after = page[-1].serial
    assert walked == whole


def test_a_page_after_a_row_outside_the_filter_goes_on_from_its_place(ledger: Any) -> None:
    # The cursor row was revoked between two pages of the active listing: the next page
    # still starts right after the cursor's place in time.
    query = CertificateQuery(user_id="alice", status=CertificateStatus.ACTIVE, now=NOW)
    revoked = [
        r.serial for r in select_rows(_rows(), replace(query, status=CertificateStatus.REVOKED))
    ]
    cursor = revoked[1]
    expected = select_rows(_rows(), replace(query, after=cursor))
    assert expected  # Older active rows exist after it.
    assert ledger.query(replace(query, after=cursor)) == expected


def test_limits_and_statuses_are_checked() -> None:
    with pytest.raises(ValueError, match="limit"):
        CertificateQuery(limit=0)
    with pytest.raises(ValueError, match="now"):
        CertificateQuery(status=CertificateStatus.ACTIVE)
