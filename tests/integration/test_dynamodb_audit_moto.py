"""The DynamoDB audit trail against moto in server mode: one partition per day of the outbox
table, listed newest first across days and pages, by Query (the exact requests:
tests/unit/test_dynamodb_audit_stubber.py). The filters' meaning is the one every store
shares (tests/integration/test_lifecycle_stores.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nodecert.core.values import AuditEntry, AuditQuery
from nodecert.store.dynamodb.outbox import DynamoDBOutbox
from nodecert.store.dynamodb.store import create_tables

# Three days, the last one crossing midnight, and a quiet day (12-03) between them.
TIMES = [
    datetime(2026, 12, 1, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 12, 2, 0, 0, tzinfo=UTC),
    datetime(2026, 12, 2, 12, 0, tzinfo=UTC),
    datetime(2026, 12, 4, 8, 0, tzinfo=UTC),
    datetime(2026, 12, 4, 8, 0, 1, tzinfo=UTC),
]


@pytest.fixture
def trail(aws_client, unique):
    client = aws_client("dynamodb")
    tables = {name: f"{name}-{unique}" for name in ("nodes", "certificates", "limits", "outbox")}
    create_tables(
        client,
        nodes_table=tables["nodes"],
        certificates_table=tables["certificates"],
        limits_table=tables["limits"],
        outbox_table=tables["outbox"],
    )
    outbox = DynamoDBOutbox(
        client,
        certificates_table=tables["certificates"],
        outbox_table=tables["outbox"],
        limits_table=tables["limits"],
    )
    outbox.audit.page = {"Limit": 1}  # Every page one item: paging is exercised.
    for i, at in enumerate(TIMES):
        outbox.append_audit(
            AuditEntry(
                at=at,
                actor="ops",
                action="node.add" if i % 2 else "certificate.revoke",
                target=f"n{i}",
                user_id="alice" if i < 3 else "bob",
                node_id=f"n{i}",
            )
        )
    return outbox, client, tables


def _targets(outbox, **filters):
    return [e.target for e in outbox.audit_entries(query=AuditQuery(**filters))]


def test_the_trail_lists_newest_first_across_days_and_pages(trail):
    outbox, _, _ = trail
    assert _targets(outbox) == ["n4", "n3", "n2", "n1", "n0"]
    assert _targets(outbox, limit=3) == ["n4", "n3", "n2"]
    # A filter reads past entries that do not match, on other days too.
    assert _targets(outbox, user_id="alice", limit=2) == ["n2", "n1"]
    assert _targets(outbox, action="node.", limit=10) == ["n3", "n1"]
    assert _targets(outbox, node_id="n0") == ["n0"]
    assert _targets(outbox, user_id="carol") == []


def test_since_and_until_are_exact_at_the_microsecond_and_at_midnight(trail):
    outbox, _, _ = trail
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    # since is inclusive, until exclusive, whichever day they fall on.
    assert _targets(outbox, since=midnight) == ["n4", "n3", "n2", "n1"]
    assert _targets(outbox, until=midnight) == ["n0"]
    assert _targets(outbox, since=TIMES[0], until=midnight) == ["n0"]
    assert _targets(outbox, since=TIMES[0] + timedelta(microseconds=1), until=midnight) == []
    assert _targets(outbox, since=datetime(2026, 12, 3, tzinfo=UTC), until=TIMES[4]) == ["n3"]
    assert _targets(outbox, since=TIMES[4], until=TIMES[0]) == []  # inverted: nothing
    # Every answer is the reference filter's.
    for since, until in [(TIMES[1], TIMES[3]), (None, TIMES[2]), (TIMES[2], None)]:
        query = AuditQuery(since=since, until=until)
        expected = [t for t in reversed(range(5)) if query.matches(_entry(t))]
        assert _targets(outbox, since=since, until=until) == [f"n{t}" for t in expected]


def _entry(index):
    return AuditEntry(at=TIMES[index], actor="ops", action="x", target=f"n{index}")


def test_each_day_is_a_partition_listed_once(trail):
    _, client, tables = trail
    days = client.query(
        TableName=tables["outbox"],
        KeyConditionExpression="#q = :q",
        ExpressionAttributeNames={"#q": "queue"},
        ExpressionAttributeValues={":q": {"S": "audit"}},
    )["Items"]
    assert [d["id"]["S"] for d in days] == ["2026-12-01", "2026-12-02", "2026-12-04"]
    second = client.query(
        TableName=tables["outbox"],
        KeyConditionExpression="#q = :q",
        ExpressionAttributeNames={"#q": "queue"},
        ExpressionAttributeValues={":q": {"S": "audit#2026-12-02"}},
    )["Items"]
    assert [i["target"]["S"] for i in second] == ["n1", "n2"]
    # Nothing of the trail is left in the limits table, or in the queue's index.
    assert client.scan(TableName=tables["limits"])["Items"] == []
    assert client.scan(TableName=tables["outbox"], IndexName="byTime")["Items"] == []


def test_a_malformed_entry_is_skipped_and_the_listing_goes_on(trail, caplog):
    outbox, client, tables = trail
    client.put_item(
        TableName=tables["outbox"],
        Item={"queue": {"S": "audit#2026-12-04"}, "id": {"S": "2026-12-04T09:00:00.000000Z#x"}},
    )
    assert _targets(outbox, limit=2) == ["n4", "n3"]
    assert "audit: malformed item" in caplog.text
