"""The authorizer's decision over the real stores: SQLite on a file, DynamoDB on moto."""

import pytest

from nodecert.aws.authorizer import TargetSource, handle
from nodecert.core.values import RevocationReason
from nodecert.store.sqlite.store import SQLiteStore
from tests.kit import ADMIN, admin_of, authority, decider, event, issue, new_ca, sign

PATH = TargetSource("path:nodeId")


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "nodecert.db")
        yield store, store
        store.close()
        return
    from nodecert.store.dynamodb.outbox import DynamoDBOutbox
    from nodecert.store.dynamodb.store import DynamoDBStore, create_tables

    client = request.getfixturevalue("aws_client")("dynamodb")
    unique = request.getfixturevalue("unique")
    tables = f"nodes-{unique}", f"certificates-{unique}", f"limits-{unique}", f"outbox-{unique}"
    create_tables(
        client,
        nodes_table=tables[0],
        certificates_table=tables[1],
        limits_table=tables[2],
        outbox_table=tables[3],
    )
    yield (
        DynamoDBStore(client, nodes_table=tables[0], certificates_table=tables[1]),
        DynamoDBOutbox(
            client, certificates_table=tables[1], outbox_table=tables[3], limits_table=tables[2]
        ),
    )
    for table in tables:
        client.delete_table(TableName=table)


@pytest.mark.parametrize("name", ["authorizer_rest_request.json", "authorizer_http_v2.json"])
def test_decisions_over_the_store(tmp_path, store, name):
    store, outbox = store
    ca = new_ca(tmp_path / "ca")
    auth = authority(ca, store)
    admin = admin_of(auth, outbox=outbox)
    decide = decider(ca, store)

    def outcome(pem, node="n1"):
        out = handle(event(name, pem=pem, node=node), decide, PATH)
        allowed = out.get("isAuthorized")
        if allowed is None:
            allowed = out["policyDocument"]["Statement"][0]["Effect"] == "Allow"
        return allowed, out["context"].get("reason")

    alice = issue(auth, "alice", "n1", admin=admin)
    assert outcome(alice.pem) == (True, None)
    admin.put_node(ADMIN, "n2", "alice")
    assert outcome(alice.pem, node="n2") == (False, "wrong_node")
    assert outcome(sign(new_ca(tmp_path / "evil"), "alice", "n1").pem) == (
        False,
        "untrusted_issuer",
    )
    second = issue(auth, "alice", "n1", admin=admin)
    admin.revoke(ADMIN, second.serial, RevocationReason.KEY_COMPROMISE)
    assert outcome(second.pem) == (False, "revoked")
    assert outcome(alice.pem) == (True, None)
    admin.put_node(ADMIN, "n1", "bob")  # Transfer: revokes, and the owner changed.
    assert outcome(alice.pem)[0] is False
