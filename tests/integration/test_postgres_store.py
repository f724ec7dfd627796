"""PostgresStore on a real PostgreSQL server: schema, failures, several servers, limits.

The behaviour every store shares is in test_store_contract.py.

Each test gets a schema of its own in the session's throwaway cluster (conftest.py).
Two store objects on one database stand in for two nodecert servers behind a balancer.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta, timezone
from typing import Any

import psycopg
import pytest

from nodecert.core.errors import (
    ConfigurationError,
    ConflictError,
    StoreUnavailableError,
)
from nodecert.core.values import AuditEntry, AuditQuery, RevocationReason
from nodecert.store.postgres.store import SCHEMA_VERSION, PostgresStore
from tests.fakes import race
from tests.records import T0, certificate

from .conftest import PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(postgres_dsn: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres_dsn)
    yield opened
    opened.close()


def raw(dsn: str, query: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as db:
        cursor = db.execute(query, args)
        return cursor.fetchall() if cursor.description else []


# Schema


def test_new_database_gets_the_schema_and_its_version(store, postgres_dsn):
    assert raw(postgres_dsn, "SELECT version FROM nodecert_schema") == [(SCHEMA_VERSION,)]
    columns = dict(
        raw(
            postgres_dsn,
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'certificates' AND table_schema = current_schema()",
        )
    )
    assert columns["created_at"] == "timestamp with time zone"
    assert columns["revoked_at"] == "timestamp with time zone"
    assert columns["serial"] == "text"
    indexes = {
        row[0]
        for row in raw(
            postgres_dsn, "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        )
    }
    assert {
        "certificates_by_user",
        "certificates_by_node",
        "nodes_by_owner",
        "used_tokens_by_expiry",
    } <= indexes


def test_a_row_is_committed_before_record_returns(store, postgres_dsn):
    # Group commit is SQLite's alone: here the commit is done when record() returns, so
    # another connection sees the row without waiting on it.
    store.record(certificate("0c0c")).wait()
    other = PostgresStore(postgres_dsn)
    try:
        assert other.get("0c0c") == certificate("0c0c")
    finally:
        other.close()


def test_reopening_keeps_the_data_and_the_version(postgres_dsn):
    first = PostgresStore(postgres_dsn)
    first.put_node("n1", "alice", at=T0)
    first.record(certificate("0123")).wait()
    first.close()
    second = PostgresStore(postgres_dsn)
    try:
        assert second.owner_of("n1") == "alice"
        assert second.get("0123") == certificate("0123")
    finally:
        second.close()
    assert raw(postgres_dsn, "SELECT version FROM nodecert_schema") == [(SCHEMA_VERSION,)]


def test_servers_starting_together_do_not_race_on_the_schema(postgres_dsn):
    stores = race(6, lambda _: PostgresStore(postgres_dsn))
    try:
        stores[0].record(certificate("01")).wait()
        assert all(s.get("01") is not None for s in stores)
    finally:
        for opened in stores:
            opened.close()


def test_database_from_a_newer_nodecert_is_refused(store, postgres_dsn):
    raw(postgres_dsn, "UPDATE nodecert_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreUnavailableError, match=f"schema version {SCHEMA_VERSION + 1}"):
        PostgresStore(postgres_dsn)
    # The newer database is left as it was.
    assert raw(postgres_dsn, "SELECT version FROM nodecert_schema") == [(SCHEMA_VERSION + 1,)]


# Failures


def test_an_unreachable_server_is_unavailable_and_the_password_is_never_shown(
    postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
):
    import socket

    with socket.socket() as sock:  # A port where nothing listens.
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    password = "Db-Pa55word-never-shown"
    dsn = f"postgresql://nodecert:{password}@127.0.0.1:{port}/nodecert"
    with caplog.at_level(logging.DEBUG), pytest.raises(StoreUnavailableError) as caught:
        PostgresStore(dsn, timeout_s=2)
    assert caught.value.detail.startswith("store: PostgreSQL start failed: OperationalError")
    assert caught.value.retry_after == 1
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    assert "refused" in caplog.text.lower()  # The operator's log says why.
    for text in (caught.value.detail, str(caught.value), caplog.text):
        assert password not in text
        assert str(port) not in caught.value.detail


def test_a_wrong_password_is_unavailable_without_the_password(postgres_server):
    dsn = postgres_server.dsn("postgres").replace(
        postgres_server.password, "Wr0ng-password-never-shown"
    )
    with pytest.raises(StoreUnavailableError, match="start failed") as caught:
        PostgresStore(dsn)
    assert "Wr0ng-password" not in caught.value.detail
    assert postgres_server.password not in caught.value.detail


def test_a_malformed_connection_string_is_a_configuration_error_without_its_text():
    with pytest.raises(ConfigurationError, match="NODECERT_DATABASE_URL") as caught:
        PostgresStore("host=db password secretpw nonsense")
    assert "secretpw" not in caught.value.detail
    assert caught.value.__cause__ is None  # libpq's message quotes the string.


def test_a_lost_connection_is_unavailable_once_then_the_pool_recovers(postgres_dsn):
    # A restart or failover of the server: each pooled connection fails one request with
    # a 503 (Retry-After: 1) and is replaced. One connection makes that count exact.
    store = PostgresStore(postgres_dsn, min_size=1, max_size=1)
    try:
        store.put_node("n1", "alice", at=T0)
        raw(
            postgres_dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid != pg_backend_pid()",
        )
        with pytest.raises(StoreUnavailableError, match="read failed: AdminShutdown") as caught:
            store.owner_of("n1")
        assert caught.value.retry_after == 1
        assert store.owner_of("n1") == "alice"  # The broken connection was replaced.
    finally:
        store.close()


def test_a_closed_store_is_unavailable(postgres_dsn):
    opened = PostgresStore(postgres_dsn)
    opened.close()
    opened.close()  # Closing twice is harmless.
    with pytest.raises(StoreUnavailableError):
        opened.owner_of("n1")


# Node directory


def test_ids_sort_as_bytes_whatever_the_database_locale(postgres_server):
    # An ICU locale sorts "a-b" next to "ab" and "N2" next to "n2"; SQLite, DynamoDB and
    # query_rows compare bytes. The columns are COLLATE "C", so the order is the same.
    name = postgres_server.create_database(
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
    )
    ids = ["n2", "N1", "a-b", "ab", "a.c", "Z9", "a_b"]
    icu_order = [
        row[0]
        for row in raw(
            postgres_server.dsn(name),
            "SELECT v FROM unnest(%s::text[]) AS v ORDER BY v",
            (ids,),
        )
    ]
    assert icu_order != sorted(ids)  # The database's own order does differ.
    opened = PostgresStore(postgres_server.dsn(name))
    try:
        for node in ids:
            opened.put_node(node, "alice", at=T0)
            opened.record(certificate(node, node=node)).wait()  # Same time: ordered by serial.
        assert [n.node_id for n in opened.list_nodes()] == sorted(ids)
        assert [r.serial for r in opened.find(user_id="alice")] == sorted(ids, reverse=True)
    finally:
        opened.close()


# Ledger


def test_times_in_another_zone_are_the_same_instants(store):
    east = timezone(timedelta(hours=5, minutes=30))
    row = dataclasses.replace(certificate("0e"), created_at=T0.astimezone(east))
    store.record(row).wait()
    got = store.get("0e")
    assert got.created_at == T0
    assert got.created_at.utcoffset() == timedelta(0)


def test_two_servers_see_each_others_writes(postgres_dsn):
    a, b = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    try:
        a.record(certificate("01")).wait()
        assert b.get("01") is not None
        with pytest.raises(ConflictError):
            b.record(certificate("01")).wait()
        # Concurrent revocations from both keep the first time and reason.
        first = b.mark_revoked("01", reason=RevocationReason.KEY_COMPROMISE, at=T0)
        later = T0 + timedelta(days=1)
        assert a.mark_revoked("01", reason=RevocationReason.SUPERSEDED, at=later) == first
        assert a.get("01") == first
    finally:
        a.close()
        b.close()


# Single-use tokens


def test_a_token_id_is_used_once(store):
    expires = T0 + timedelta(minutes=5)
    store.use_once("jti-1", expires_at=expires, now=T0)
    with pytest.raises(ConflictError, match="already used") as caught:
        store.use_once("jti-1", expires_at=expires, now=T0 + timedelta(minutes=1))
    assert isinstance(caught.value.__cause__, psycopg.errors.UniqueViolation)
    store.use_once("jti-2", expires_at=expires, now=T0)


def test_expired_token_ids_are_purged(store, postgres_dsn):
    store.use_once("old", expires_at=T0 + timedelta(minutes=5), now=T0)
    store.use_once("keep", expires_at=T0 + timedelta(hours=5), now=T0)
    later = T0 + timedelta(minutes=6)
    store.use_once("new", expires_at=later + timedelta(minutes=5), now=later)
    assert sorted(r[0] for r in raw(postgres_dsn, "SELECT key FROM used_tokens")) == [
        "keep",
        "new",
    ]
    store.use_once("old", expires_at=later + timedelta(minutes=5), now=later)  # Expired: free.


def test_a_token_used_on_one_server_is_refused_on_another(postgres_dsn):
    a, b = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    try:
        a.use_once("jti", expires_at=T0 + timedelta(minutes=5), now=T0)
        with pytest.raises(ConflictError):
            b.use_once("jti", expires_at=T0 + timedelta(minutes=5), now=T0)
    finally:
        a.close()
        b.close()


# Rate buckets


def test_the_bucket_refills_with_time_and_holds_across_servers(postgres_dsn):
    first, second = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    take = {"capacity": 2.0, "refill_per_s": 1.0}
    try:
        assert first.take_token("u", now=T0, **take) == 0.0
        assert second.take_token("u", now=T0, **take) == 0.0
        assert first.take_token("u", now=T0, **take) == 1.0
        assert second.take_token("u", now=T0 + timedelta(seconds=0.5), **take) == 0.5
        assert first.take_token("u", now=T0 + timedelta(seconds=1), **take) == 0.0
        # Never more than the capacity, however long the bucket rested.
        later = T0 + timedelta(hours=1)
        assert [second.take_token("u", now=later, **take) for _ in range(3)] == [0.0, 0.0, 1.0]
        # A clock that went backwards refills nothing; other buckets are their own.
        assert first.take_token("u", now=T0, **take) == 1.0
        assert first.take_token("v", now=T0, **take) == 0.0
        assert first.take_token("w", capacity=1.0, refill_per_s=0.0, now=T0) == 0.0
        assert first.take_token("w", capacity=1.0, refill_per_s=0.0, now=later) == float("inf")
    finally:
        first.close()
        second.close()


def test_concurrent_servers_never_overspend(postgres_dsn):
    stores = [PostgresStore(postgres_dsn) for _ in range(2)]
    granted: list[float] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        for _ in range(25):
            result = stores[index % 2].take_token("u", capacity=30.0, refill_per_s=0.0001, now=T0)
            with lock:
                granted.append(result)

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for opened in stores:
            opened.close()
    assert len(granted) == 200
    assert sum(1 for g in granted if g == 0.0) == 30


def test_a_version_1_database_is_upgraded_in_place_and_keeps_its_rows(postgres_dsn):
    first = PostgresStore(postgres_dsn)
    old = dataclasses.replace(certificate("0a1b"), issuer="arn:ca")
    first.record(old).wait()
    first.close()
    # What schema version 1 had: no DNS names, no successors, no outbox, no audit trail.
    raw(
        postgres_dsn,
        "ALTER TABLE certificates DROP COLUMN dns_names, DROP COLUMN superseded_by,"
        " DROP COLUMN user_subject, DROP COLUMN ip_addresses",
    )
    raw(postgres_dsn, "DROP TABLE revocation_outbox, audit_log")
    raw(postgres_dsn, "UPDATE nodecert_schema SET version = 1")
    upgraded = PostgresStore(postgres_dsn)
    try:
        assert upgraded.get("0a1b") == old
        upgraded.record_successor(
            certificate("0c0d", minutes=1, renewed_from="0a1b", dns_names=("n1.example",))
        )
        assert upgraded.get("0c0d").dns_names == ("n1.example",)
        assert upgraded.get("0a1b").superseded_by == "0c0d"
        upgraded.revoke_and_queue(["0c0d"], reason=RevocationReason.UNSPECIFIED, at=T0)
        assert upgraded.count_pending_revocations() == 1
    finally:
        upgraded.close()
    assert raw(postgres_dsn, "SELECT version FROM nodecert_schema") == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION == 4


def test_a_version_2_audit_log_gains_who_and_where_in_place(postgres_dsn):
    first = PostgresStore(postgres_dsn)
    first.append_audit(AuditEntry(at=T0, actor="cli:root", action="node.add", target="n1"))
    first.close()
    raw(
        postgres_dsn,
        "ALTER TABLE audit_log DROP COLUMN user_id, DROP COLUMN node_id, DROP COLUMN source",
    )
    raw(postgres_dsn, "UPDATE nodecert_schema SET version = 2")
    upgraded = PostgresStore(postgres_dsn)
    try:
        upgraded.append_audit(
            AuditEntry(at=T0, actor="ops", action="node.remove", target="n1", node_id="n1")
        )
        assert [e.action for e in upgraded.audit_entries(query=AuditQuery(node_id="n1"))] == [
            "node.remove"
        ]
        assert {e.action for e in upgraded.audit_entries(limit=10)} == {"node.add", "node.remove"}
    finally:
        upgraded.close()
    assert raw(postgres_dsn, "SELECT version FROM nodecert_schema") == [(SCHEMA_VERSION,)]
