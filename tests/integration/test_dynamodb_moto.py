"""DynamoDBStore against a moto server: the full Ledger and NodeDirectory behaviour."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from nodecert.errors import ConflictError, NotFoundError, StoreUnavailableError
from nodecert.ports import CertificateRecord, CertificateStatus, RevocationReason
from nodecert.store.dynamodb import DynamoDBStore, create_tables

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(aws_client, unique):
    client = aws_client("dynamodb")
    nodes, certificates = f"nodes-{unique}", f"certificates-{unique}"
    create_tables(client, nodes_table=nodes, certificates_table=certificates)
    yield DynamoDBStore(client, nodes_table=nodes, certificates_table=certificates)
    for table in (nodes, certificates):
        client.delete_table(TableName=table)


def row(serial, *, user="alice", node="node-1", minutes=0, **kwargs):
    created = T0 + timedelta(minutes=minutes)
    return CertificateRecord(
        serial=serial,
        user_id=user,
        node_id=node,
        key_type="ec-p256",
        not_before=created - timedelta(minutes=1),
        not_after=created + timedelta(days=7),
        fingerprint_sha256="ab" * 32,
        request_id=f"req-{serial}",
        created_at=created,
        **kwargs,
    )


# Ledger


def test_record_then_get_round_trips_every_field(store):
    record = row(
        "0a1b", renewed_from="99", issuer="arn:aws:acm-pca:eu-west-1:1:certificate-authority/x"
    )
    store.record(record)
    assert store.get("0a1b") == record
    assert store.get("ffff") is None


def test_a_serial_is_never_overwritten(store):
    store.record(row("0a1b"))
    with pytest.raises(ConflictError, match="0a1b"):
        store.record(row("0a1b", user="mallory"))
    assert store.get("0a1b").user_id == "alice"


def test_find_by_user_by_node_and_both_newest_first(store):
    store.record(row("01", minutes=1))
    store.record(row("02", minutes=3, node="node-2"))
    store.record(row("03", minutes=2))
    store.record(row("04", minutes=4, user="bob", node="node-1"))

    assert [r.serial for r in store.find(user_id="alice")] == ["02", "03", "01"]
    assert [r.serial for r in store.find(node_id="node-1")] == ["04", "03", "01"]
    assert [r.serial for r in store.find(user_id="alice", node_id="node-1")] == ["03", "01"]
    assert [r.serial for r in store.find()] == ["04", "02", "03", "01"]
    assert store.find(user_id="carol") == []


def test_find_and_list_follow_pages(store):
    # Large items make DynamoDB (and moto) cut a result into 1 MB pages.
    bulky = "x" * 60_000
    for minute in range(40):
        store.record(row(f"{minute:04x}", minutes=minute, renewed_from=bulky))
    pages = []
    store._client.meta.events.register("after-call.dynamodb.*", lambda **kw: pages.append(1))

    assert len(store.find(user_id="alice")) == 40
    assert len(pages) > 1
    assert len(store.find()) == 40


def test_mark_revoked_is_idempotent_and_keeps_the_first_revocation(store):
    store.record(row("0a1b"))
    first = store.mark_revoked("0a1b", reason=RevocationReason.KEY_COMPROMISE, at=T0)
    second = store.mark_revoked(
        "0a1b", reason=RevocationReason.SUPERSEDED, at=T0 + timedelta(hours=1)
    )

    assert first.status is CertificateStatus.REVOKED
    assert first.revoked_at == T0
    assert first.revocation_reason is RevocationReason.KEY_COMPROMISE
    assert second == first
    assert store.get("0a1b") == replace(
        row("0a1b"),
        status=CertificateStatus.REVOKED,
        revoked_at=T0,
        revocation_reason=RevocationReason.KEY_COMPROMISE,
    )


def test_mark_revoked_of_an_unknown_serial_is_not_found(store):
    with pytest.raises(NotFoundError, match="ffff"):
        store.mark_revoked("ffff", reason=RevocationReason.UNSPECIFIED, at=T0)


# NodeDirectory


def test_put_owner_of_list_and_delete_nodes(store):
    assert store.owner_of("node-1") is None
    created = store.put_node("node-1", "alice", at=T0)
    store.put_node("node-3", "alice", at=T0)
    store.put_node("node-2", "bob", at=T0)

    assert created.owner == "alice"
    assert created.created_at == T0
    assert store.owner_of("node-1") == "alice"
    assert [n.node_id for n in store.list_nodes()] == ["node-1", "node-2", "node-3"]
    assert [n.node_id for n in store.list_nodes(owner="alice")] == ["node-1", "node-3"]
    assert store.delete_node("node-1") is True
    assert store.delete_node("node-1") is False
    assert store.owner_of("node-1") is None


def test_reassigning_a_node_keeps_its_creation_time(store):
    store.put_node("node-1", "alice", at=T0)
    moved = store.put_node("node-1", "bob", at=T0 + timedelta(days=1))
    assert (moved.owner, moved.created_at) == ("bob", T0)
    assert store.list_nodes(owner="alice") == []


# Errors


def test_a_missing_table_is_a_clear_store_error(aws_client, unique):
    store = DynamoDBStore(
        aws_client("dynamodb"), nodes_table=f"absent-{unique}", certificates_table="absent"
    )
    with pytest.raises(StoreUnavailableError, match="does not exist") as caught:
        store.owner_of("node-1")
    assert isinstance(caught.value.__cause__, ClientError)
    assert caught.value.retry_after == 60
