"""The store contract: the same node directory and ledger behaviour from every store.

SQLite (a file under tmp_path), PostgreSQL (a schema of the session's throwaway cluster),
DynamoDB (tables on the session's moto server) and the shipped fake users test with
(``nodecert.testing.MemoryStore``) run the very same tests. What only one
store has (schema upgrades, durability modes, connection failures, fork safety, DynamoDB
paging) stays in that store's own test module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from nodecert.core.errors import ConflictError, NotFoundError
from nodecert.core.values import CertificateStatus, NodeRecord, Profile, RevocationReason
from tests.fakes import race
from tests.records import T0, certificate


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "dynamodb", "memory"]
)
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    if request.param == "memory":
        from nodecert.testing import MemoryStore

        yield MemoryStore()
    elif request.param == "sqlite":
        from nodecert.store.sqlite.store import SQLiteStore

        opened: Any = SQLiteStore(tmp_path / "data" / "nodecert.db")
        yield opened
        opened.close()
    elif request.param == "postgres":
        from nodecert.store.postgres.store import PostgresStore

        opened = PostgresStore(request.getfixturevalue("postgres_dsn"))
        yield opened
        opened.close()
    else:
        from nodecert.store.dynamodb.store import DynamoDBStore, create_tables

        aws_client: Callable[[str], Any] = request.getfixturevalue("aws_client")
        unique: str = request.getfixturevalue("unique")
        client = aws_client("dynamodb")
        nodes, certificates = f"nodes-{unique}", f"certificates-{unique}"
        create_tables(client, nodes_table=nodes, certificates_table=certificates)
        yield DynamoDBStore(client, nodes_table=nodes, certificates_table=certificates)
        for table in (nodes, certificates):
            client.delete_table(TableName=table)


# NodeDirectory


def test_put_and_owner_of(store):
    record = store.put_node("n1", "alice", at=T0)
    assert record == NodeRecord(node_id="n1", owner="alice", created_at=T0)
    assert store.owner_of("n1") == "alice"
    assert store.owner_of("n2") is None


def test_transfer_changes_the_owner_and_keeps_the_creation_time(store):
    store.put_node("n1", "alice", at=T0)
    moved = store.put_node("n1", "bob", at=T0 + timedelta(days=1))
    assert moved == NodeRecord(node_id="n1", owner="bob", created_at=T0)
    assert store.owner_of("n1") == "bob"
    assert store.list_nodes(owner="alice") == []


def test_delete_node(store):
    store.put_node("n1", "alice", at=T0)
    assert store.delete_node("n1") is True
    assert store.owner_of("n1") is None
    assert store.delete_node("n1") is False


def test_list_nodes_sorted_with_owner_filter(store):
    for node, owner in [("n3", "alice"), ("n1", "bob"), ("n2", "alice")]:
        store.put_node(node, owner, at=T0)
    assert [n.node_id for n in store.list_nodes()] == ["n1", "n2", "n3"]
    assert [n.node_id for n in store.list_nodes(owner="alice")] == ["n2", "n3"]
    assert store.list_nodes(owner="carol") == []


# Ledger


def test_record_and_get_round_trip(store):
    row = certificate("0a1b")
    store.record(row).wait()
    assert store.get("0a1b") == row
    assert store.get("ffff") is None


def test_every_field_round_trips(store):
    row = dataclasses.replace(
        certificate("beef"),
        status=CertificateStatus.REVOKED,
        revoked_at=T0 + timedelta(hours=1),
        revocation_reason=RevocationReason.KEY_COMPROMISE,
        profile=Profile.NODE,
        renewed_from="0a1b",
        not_before=T0 + timedelta(microseconds=123456),
        issuer="arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/x",
        user_subject="auth0|5f7c'; DROP TABLE certificates; -- \u00e9\U0001f600,x",
        ip_addresses=("10.0.0.7", "fd00::7"),
    )
    store.record(row).wait()
    got = store.get("beef")
    assert [getattr(got, f.name) for f in dataclasses.fields(got)] == [
        getattr(row, f.name) for f in dataclasses.fields(row)
    ]
    assert got.created_at.tzinfo is not None


def test_find_by_user_and_by_node_newest_first(store):
    store.record(certificate("01", user="alice", node="n1", minutes=0)).wait()
    store.record(certificate("02", user="alice", node="n2", minutes=2)).wait()
    store.record(certificate("03", user="bob", node="n1", minutes=1)).wait()
    store.record(certificate("04", user="alice", node="n1", minutes=3)).wait()
    assert [r.serial for r in store.find(user_id="alice")] == ["04", "02", "01"]
    assert [r.serial for r in store.find(node_id="n1")] == ["04", "03", "01"]
    assert [r.serial for r in store.find(user_id="alice", node_id="n1")] == ["04", "01"]
    assert [r.serial for r in store.find()] == ["04", "02", "03", "01"]
    assert store.find(user_id="carol") == []


def test_find_orders_sub_second_creation_times(store):
    # Times with and without microseconds (as text in SQLite) must still sort by time.
    base = certificate("10")
    for serial, delta in [("10", 0), ("11", 500_000), ("12", 1_000_000), ("13", 1)]:
        store.record(
            dataclasses.replace(base, serial=serial, created_at=T0 + timedelta(microseconds=delta))
        ).wait()
    assert [r.serial for r in store.find(user_id="alice")] == ["12", "11", "13", "10"]


def test_duplicate_serial_is_a_conflict_and_the_original_is_unchanged(store):
    original = certificate("cafe", user="alice")
    store.record(original).wait()
    with pytest.raises(ConflictError, match="cafe"):
        store.record(certificate("cafe", user="mallory", node="n9", minutes=5)).wait()
    assert store.get("cafe") == original
    assert [r.serial for r in store.find()] == ["cafe"]
    # The store is still usable after the refused write.
    store.record(certificate("cafe01")).wait()
    assert store.get("cafe01") is not None


def test_mark_revoked_is_idempotent_and_keeps_the_first_revocation(store):
    store.record(certificate("dead")).wait()
    first = store.mark_revoked("dead", reason=RevocationReason.KEY_COMPROMISE, at=T0)
    assert first.status is CertificateStatus.REVOKED
    assert first.revoked_at == T0
    assert first.revocation_reason is RevocationReason.KEY_COMPROMISE
    again = store.mark_revoked(
        "dead", reason=RevocationReason.SUPERSEDED, at=T0 + timedelta(days=1)
    )
    assert again == first
    assert store.get("dead") == first


def test_mark_revoked_changes_only_that_row(store):
    store.record(certificate("aa")).wait()
    store.record(certificate("bb", minutes=1)).wait()
    store.mark_revoked("aa", reason=RevocationReason.UNSPECIFIED, at=T0)
    assert store.get("bb").status is CertificateStatus.ACTIVE


def test_mark_revoked_unknown_serial_is_not_found(store):
    with pytest.raises(NotFoundError, match="abcdef"):
        store.mark_revoked("abcdef", reason=RevocationReason.UNSPECIFIED, at=T0)


THREADS = 8
PER_THREAD = 20


def test_concurrent_writers_all_land(store):
    def write(worker: int) -> int:
        for i in range(PER_THREAD):
            store.record(
                certificate(
                    f"{worker:02x}{i:04x}", user=f"user-{worker}", node=f"node-{i % 5}", minutes=i
                )
            ).wait()
        return len(store.find(user_id=f"user-{worker}"))

    seen = race(THREADS, write)
    assert seen == [PER_THREAD] * THREADS
    rows = store.find()
    assert len(rows) == len({r.serial for r in rows}) == THREADS * PER_THREAD
