"""DynamoDBStore against a moto server: paging and missing tables (the behaviour every
store shares is in test_store_contract.py)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from nodecert.core.errors import StoreUnavailableError
from nodecert.store.dynamodb import DynamoDBStore, create_tables
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
        store.record(certificate(f"{minute:04x}", minutes=minute, renewed_from=bulky))
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
