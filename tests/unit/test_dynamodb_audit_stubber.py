"""The DynamoDB audit trail against botocore's Stubber: the exact requests.

A listing is strongly consistent ``Query`` calls of the outbox table, newest first: the
days (``queue = "audit"``) between since and until, then each day's partition with since
and until as a range of the sort key and the other filters as a ``FilterExpression``; never
a ``Scan``, never the limits table. An entry lists its day once per process. moto serves
the same calls (tests/integration/test_dynamodb_audit_moto.py) without pinning them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import ANY, Stubber

from nodecert.core.errors import StoreUnavailableError
from nodecert.core.values import AuditEntry, AuditQuery
from nodecert.store.dynamodb.outbox import DynamoDBOutbox

SINCE = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
UNTIL = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
READ = {"TableName": "outbox", "ScanIndexForward": False, "ConsistentRead": True}


@pytest.fixture
def stubbed():
    client = boto3.client(
        "dynamodb",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    outbox = DynamoDBOutbox(
        client, certificates_table="certificates", outbox_table="outbox", limits_table="limits"
    )
    with Stubber(client) as stubber:
        yield outbox, stubber
        stubber.assert_no_pending_responses()


def _item(day: str, time: str, **extra: str) -> dict:
    return {
        "queue": {"S": f"audit#{day}"},
        "id": {"S": f"{day}T{time}Z#ab"},
        "at": {"S": f"{day}T{time}Z"},
        "actor": {"S": "ops"},
        "action": {"S": "node.add"},
        "target": {"S": "n1"},
        "detail": {"S": ""},
        **{name: {"S": value} for name, value in extra.items()},
    }


def test_a_filtered_window_reads_its_days_by_range_and_filters_the_rest(stubbed):
    outbox, stubber = stubbed
    stubber.add_response(
        "query",
        {
            "Items": [
                {"queue": {"S": "audit"}, "id": {"S": d}} for d in ("2026-12-02", "2026-12-01")
            ]
        },
        {
            **READ,
            "KeyConditionExpression": "#queue = :queue AND #id BETWEEN :first AND :last",
            "ExpressionAttributeNames": {"#queue": "queue", "#id": "id"},
            "ExpressionAttributeValues": {
                ":queue": {"S": "audit"},
                ":first": {"S": "2026-12-01"},
                ":last": {"S": "2026-12-02"},
            },
        },
    )
    day = {
        "KeyConditionExpression": "#queue = :queue AND #id BETWEEN :since AND :until",
        "ExpressionAttributeNames": {
            "#queue": "queue",
            "#id": "id",
            "#userId": "userId",
            "#action": "action",
        },
        "FilterExpression": "#userId = :userId AND begins_with(#action, :action)",
    }
    values = {
        ":since": {"S": "2026-12-01T23:00:00.000000Z"},
        ":until": {"S": "2026-12-02T01:00:00.000000Z"},
        ":userId": {"S": "alice"},
        ":action": {"S": "node."},
    }
    # No Limit with a filter (it would count the items read, not the matches); the first
    # day's second page, then the day before.
    stubber.add_response(
        "query",
        {"Items": [], "LastEvaluatedKey": {"queue": {"S": "audit#2026-12-02"}, "id": {"S": "x"}}},
        {
            **READ,
            **day,
            "ExpressionAttributeValues": {":queue": {"S": "audit#2026-12-02"}, **values},
        },
    )
    stubber.add_response(
        "query",
        {"Items": [_item("2026-12-02", "00:30:00.000000", userId="alice")]},
        {
            **READ,
            **day,
            "ExpressionAttributeValues": {":queue": {"S": "audit#2026-12-02"}, **values},
            "ExclusiveStartKey": {"queue": {"S": "audit#2026-12-02"}, "id": {"S": "x"}},
        },
    )
    stubber.add_response(
        "query",
        {"Items": [_item("2026-12-01", "23:30:00.000000", userId="alice")]},
        {
            **READ,
            **day,
            "ExpressionAttributeValues": {":queue": {"S": "audit#2026-12-01"}, **values},
        },
    )

    query = AuditQuery(user_id="alice", action="node.", since=SINCE, until=UNTIL, limit=5)
    found = outbox.audit_entries(query=query)

    assert [e.at.hour for e in found] == [0, 23]
    assert {e.user_id for e in found} == {"alice"}


def test_an_unfiltered_listing_asks_for_no_more_than_it_needs_and_stops(stubbed):
    outbox, stubber = stubbed
    names = {"#queue": "queue"}
    stubber.add_response(
        "query",
        {
            "Items": [{"queue": {"S": "audit"}, "id": {"S": "2026-12-02"}}],
            "LastEvaluatedKey": {"queue": {"S": "audit"}, "id": {"S": "2026-12-02"}},
        },
        {
            **READ,
            "KeyConditionExpression": "#queue = :queue",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":queue": {"S": "audit"}},
        },
    )
    stubber.add_response(
        "query",
        {"Items": [_item("2026-12-02", "08:00:00.000000"), _item("2026-12-02", "07:00:00.000000")]},
        {
            **READ,
            "KeyConditionExpression": "#queue = :queue",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":queue": {"S": "audit#2026-12-02"}},
            "Limit": 2,
        },
    )
    # Two found: the days' next page and the day before are never read.
    assert [e.at.hour for e in outbox.audit_entries(limit=2)] == [8, 7]


def test_an_entry_lists_its_day_once_per_process_and_first(stubbed):
    outbox, stubber = stubbed
    day = {"TableName": "outbox", "Item": {"queue": {"S": "audit"}, "id": {"S": "2026-12-02"}}}
    entry = {"TableName": "outbox", "Item": ANY}
    stubber.add_response("put_item", {}, day)
    stubber.add_response("put_item", {}, entry)
    stubber.add_response("put_item", {}, entry)
    for minute in (1, 2):
        outbox.append_audit(
            AuditEntry(
                at=datetime(2026, 12, 2, 8, minute, tzinfo=UTC), actor="ops", action="a", target="t"
            )
        )


def test_a_day_not_listed_because_of_a_throttle_is_listed_by_the_next_entry(stubbed):
    outbox, stubber = stubbed
    day = {"TableName": "outbox", "Item": {"queue": {"S": "audit"}, "id": {"S": "2026-12-02"}}}
    stubber.add_client_error(
        "put_item",
        "ProvisionedThroughputExceededException",
        http_status_code=400,
        expected_params=day,
    )
    stubber.add_response("put_item", {}, day)
    stubber.add_response("put_item", {}, {"TableName": "outbox", "Item": ANY})
    entry = AuditEntry(at=datetime(2026, 12, 2, 8, tzinfo=UTC), actor="ops", action="a", target="t")
    with pytest.raises(StoreUnavailableError) as raised:
        outbox.append_audit(entry)  # Never an entry no listing would find.
    assert raised.value.retry_after == 1
    outbox.append_audit(entry)
