"""DynamoDBStore against a moto server: paging and missing tables (the behaviour every
store shares is in test_store_contract.py)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from nodecert.core.errors import StoreUnavailableError
from nodecert.store.dynamodb.store import DynamoDBStore, create_tables
from tests.records import certificate


@pytest.fixture
def store(aws_client, unique):
    client = aws_client("dynamodb")
    nodes, certificates = f"nodes-{unique}", f"certificates-{unique}"
    create_tables(client, nodes_table=nodes, certificates_table=certificates)
    yield DynamoDBStore(client, nodes_table=nodes, certificates_table=certificates)
    for table in (nodes, certificates):
        client.delete_table(TableName=table)


# Ledger


def test_find_and_list_follow_pages(store):
    # Large items make DynamoDB (and moto) cut a result into 1 MB pages.
    bulky = "x" * 60_000
    for minute in range(40):
        store.record(certificate(f"{minute:04x}", minutes=minute, renewed_from=bulky)).wait()
    pages = []
    store._client.meta.events.register("after-call.dynamodb.*", lambda **kw: pages.append(1))

    assert len(store.find(user_id="alice")) == 40
    assert len(pages) > 1
    assert len(store.find()) == 40


# Errors


def test_a_missing_table_is_a_clear_store_error(aws_client, unique):
    store = DynamoDBStore(
        aws_client("dynamodb"), nodes_table=f"absent-{unique}", certificates_table="absent"
    )
    with pytest.raises(StoreUnavailableError, match="does not exist") as caught:
        store.owner_of("node-1")
    assert isinstance(caught.value.__cause__, ClientError)
    assert caught.value.retry_after == 60


# The revocation outbox


def test_a_sweep_cut_short_is_finished_by_the_next_drain(aws_client, unique, monkeypatch):
    from nodecert.core.values import CertificateStatus, RevocationReason
    from nodecert.store.dynamodb.outbox import DynamoDBOutbox
    from tests.records import T0

    client = aws_client("dynamodb")
    tables = f"nodes-{unique}", f"certificates-{unique}", f"limits-{unique}", f"outbox-{unique}"
    create_tables(
        client,
        nodes_table=tables[0],
        certificates_table=tables[1],
        limits_table=tables[2],
        outbox_table=tables[3],
    )
    store = DynamoDBStore(client, nodes_table=tables[0], certificates_table=tables[1])
    outbox = DynamoDBOutbox(
        client, certificates_table=tables[1], outbox_table=tables[3], limits_table=tables[2]
    )
    serials = ["0a01", "0a02", "0a03"]
    for minute, serial in enumerate(serials):
        store.record(certificate(serial, minutes=minute)).wait()
    revoke_one, calls = outbox._revoke_one, []

    def crash_on_the_second(serial, **kwargs):
        calls.append(serial)
        if len(calls) == 2:
            raise StoreUnavailableError("store: DynamoDB is unavailable (test)")
        return revoke_one(serial, **kwargs)

    monkeypatch.setattr(outbox, "_revoke_one", crash_on_the_second)
    reason = RevocationReason.CESSATION_OF_OPERATION
    with pytest.raises(StoreUnavailableError):
        outbox.revoke_and_queue(serials, reason=reason, at=T0)
    assert [store.get(s).status for s in serials] == [
        CertificateStatus.REVOKED,
        CertificateStatus.ACTIVE,
        CertificateStatus.ACTIVE,
    ]
    monkeypatch.undo()
    # The next drain reads the queue: the sweep's marker is still there, and it finishes it.
    pending = outbox.pending_revocations(limit=10)
    assert sorted(p.serial for p in pending) == serials
    assert {p.reason for p in pending} == {reason}
    assert {store.get(s).status for s in serials} == {CertificateStatus.REVOKED}
    assert outbox._query("sweep") == []  # Completed: the marker is gone.
    for table in tables:
        client.delete_table(TableName=table)
