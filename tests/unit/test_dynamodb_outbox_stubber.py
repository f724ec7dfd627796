"""DynamoDBOutbox against botocore's Stubber: the exact reads of a drain, and what moto
cannot force.

The Stubber checks every request against the real DynamoDB service model and, here, against
the exact parameters: a drain reads the outbox table only by strongly consistent ``Query``
(the oldest queued revocations through the local index ``byTime``), never by ``Scan``, and
once the upgrade is done it does not look at the limits table at all. moto serves the same
calls (tests/integration/test_sweep_moto.py), but it never throttles, and a count of calls
there does not pin their parameters.
"""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from nodecert.core.errors import StoreUnavailableError
from nodecert.core.values import RevocationReason
from nodecert.store.dynamodb.outbox import DynamoDBOutbox

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
MARKER = {"queue": {"S": "moved"}, "id": {"S": "limits+audit"}}
QUEUE = {"ExpressionAttributeNames": {"#queue": "queue"}, "ConsistentRead": True}

# The upgrade's scan of the limits table for entries of the older layout.
_SCAN_LIMITS = {
    "TableName": "limits",
    "FilterExpression": (
        "begins_with(#key, :revoke) OR begins_with(#key, :sweep) OR begins_with(#key, :audit)"
    ),
    "ExpressionAttributeNames": {"#key": "key"},
    "ExpressionAttributeValues": {
        ":revoke": {"S": "revoke#"},
        ":sweep": {"S": "sweep#"},
        ":audit": {"S": "audit#"},
    },
    "ConsistentRead": True,
}


@pytest.fixture
def stubbed():
    client = boto3.client(
        "dynamodb",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    outbox = DynamoDBOutbox(
        client,
        certificates_table="certificates",
        outbox_table="outbox",
        limits_table="limits",
        clock=lambda: NOW,
    )
    with Stubber(client) as stubber:
        yield outbox, stubber
        stubber.assert_no_pending_responses()


def _upgraded_long_ago(stubber: Stubber) -> None:
    # The limits table has held no item of the older layout since the day before.
    stubber.add_response(
        "get_item",
        {"Item": {**MARKER, "emptySince": {"S": "2026-12-06T08:00:00.000000Z"}}},
        {"TableName": "outbox", "Key": MARKER, "ConsistentRead": True},
    )


def _queued(serial: str, at: str) -> dict:
    return {
        "queue": {"S": "revoke"},
        "id": {"S": serial},
        "position": {"S": f"{at}#{serial}"},
        "reason": {"S": "keyCompromise"},
        "queuedAt": {"S": at},
    }


def _query(partition: str, **extra):
    return {
        "TableName": "outbox",
        "KeyConditionExpression": "#queue = :queue",
        "ExpressionAttributeValues": {":queue": {"S": partition}},
        **QUEUE,
        **extra,
    }


def test_a_drain_reads_the_oldest_by_consistent_query_of_the_local_index(stubbed):
    outbox, stubber = stubbed
    _upgraded_long_ago(stubber)
    stubber.add_response("query", {"Items": []}, _query("sweep"))
    stubber.add_response(
        "query",
        {
            "Items": [
                _queued("0a", "2026-12-07T07:00:00.000000Z"),
                _queued("0b", "2026-12-07T07:30:00.000000Z"),
            ]
        },
        _query("revoke", IndexName="byTime", Limit=100),
    )
    stubber.add_response("query", {"Count": 2}, _query("revoke", Select="COUNT"))

    pending = outbox.pending_revocations(limit=100)
    count = outbox.count_pending_revocations()

    assert [(p.serial, p.reason) for p in pending] == [
        ("0a", RevocationReason.KEY_COMPROMISE),
        ("0b", RevocationReason.KEY_COMPROMISE),
    ]
    assert count == 2
    assert outbox.upgrade.done


def test_malformed_items_do_not_take_the_places_of_well_formed_ones(stubbed):
    outbox, stubber = stubbed
    _upgraded_long_ago(stubber)
    stubber.add_response("query", {"Items": []}, _query("sweep"))
    broken = {"queue": {"S": "revoke"}, "id": {"S": "0a"}, "position": {"S": "#0a"}}
    last = {"queue": {"S": "revoke"}, "id": {"S": "0a"}, "position": {"S": "#0a"}}
    stubber.add_response(
        "query",
        {"Items": [broken, _queued("0b", "2026-12-07T07:00:00.000000Z")], "LastEvaluatedKey": last},
        _query("revoke", IndexName="byTime", Limit=2),
    )
    stubber.add_response(
        "query",
        {"Items": [_queued("0c", "2026-12-07T07:30:00.000000Z")]},
        _query("revoke", IndexName="byTime", Limit=1, ExclusiveStartKey=last),
    )

    pending = outbox.pending_revocations(limit=2)

    assert [p.serial for p in pending] == ["0b", "0c"]


def test_a_throttled_read_of_the_queue_is_a_store_error_that_asks_for_a_retry(stubbed):
    outbox, stubber = stubbed
    _upgraded_long_ago(stubber)
    stubber.add_client_error(
        "query",
        "ProvisionedThroughputExceededException",
        http_status_code=400,
        expected_params=_query("sweep"),
    )

    with pytest.raises(StoreUnavailableError, match="throttled") as raised:
        outbox.pending_revocations(limit=100)

    assert raised.value.retry_after == 1
    assert outbox.upgrade.done  # The marker was read first: done, and stays so.


def test_within_a_minute_a_second_batch_does_not_look_at_the_limits_table_again(stubbed):
    outbox, stubber = stubbed
    # The first batch: no marker yet, a scan of the limits table finds nothing: marked.
    stubber.add_response(
        "get_item", {}, {"TableName": "outbox", "Key": MARKER, "ConsistentRead": True}
    )
    stubber.add_response("scan", {"Items": []}, _SCAN_LIMITS)
    stubber.add_response(
        "put_item",
        {},
        {
            "TableName": "outbox",
            "Item": {**MARKER, "emptySince": {"S": "2026-12-07T08:00:00.000000Z"}},
        },
    )
    for _ in range(2):  # Each batch: the two queries of the queue, no other call.
        stubber.add_response("query", {"Items": []}, _query("sweep"))
        stubber.add_response(
            "query", {"Items": []}, _query("revoke", IndexName="byTime", Limit=100)
        )

    assert outbox.pending_revocations(limit=100) == []
    assert outbox.pending_revocations(limit=100) == []
    assert not outbox.upgrade.done  # Empty for less than an hour: it looks again later.


def test_an_older_layouts_items_are_moved_whole_and_other_keys_are_not():
    from nodecert.store.dynamodb.upgrade import moved_item

    queued = {
        "key": {"S": "revoke#0a"},
        "serial": {"S": "0a"},
        "reason": {"S": "keyCompromise"},
        "issuer": {"S": "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/x"},
        "queuedAt": {"S": "2026-12-01T08:00:00.000000Z"},
    }
    assert moved_item(queued) == {
        "queue": {"S": "revoke"},
        "id": {"S": "0a"},
        "position": {"S": "2026-12-01T08:00:00.000000Z#0a"},
        "reason": queued["reason"],
        "issuer": queued["issuer"],
        "queuedAt": queued["queuedAt"],
    }
    # Malformed (no time): moved, sorted first, so that the drain reports it.
    assert moved_item({"key": {"S": "revoke#0b"}})["position"] == {"S": "#0b"}
    sweep = {"key": {"S": "sweep#t#1"}, "serials": {"L": [{"S": "0c"}]}, "at": {"S": "t"}}
    assert moved_item(sweep) == {
        "queue": {"S": "sweep"},
        "id": {"S": "t#1"},
        "serials": sweep["serials"],
        "at": sweep["at"],
    }
    entry = {
        "key": {"S": "audit#2026-12-01T08:00:00.000000Z#01"},
        "at": {"S": "2026-12-01T08:00:00.000000Z"},
        "action": {"S": "node.add"},
    }
    assert moved_item(entry) == {
        "queue": {"S": "audit#2026-12-01"},
        "id": {"S": "2026-12-01T08:00:00.000000Z#01"},
        "at": entry["at"],
        "action": entry["action"],
    }
    # An audit key without a time, or without its random part, has no day: left, reported.
    malformed = ("audit#t#1", "audit#2026-12-01T08:00:00.000000Z", "audit#2026-12-01#1")
    for key in ("revoke#", "sweep#", "audit#", *malformed, "once#x", "bucket#issue:alice"):
        assert moved_item({"key": {"S": key}}) is None, key
    assert moved_item({"serial": {"S": "0d"}}) is None


def _older_layout(*keys: str) -> list:
    # The marker read (none yet), then the scan of the limits table finding ``keys``.
    scan = _SCAN_LIMITS
    items = [{"key": {"S": key}, "action": {"S": "node.remove"}} for key in keys]
    return [
        ("get_item", {}, {"TableName": "outbox", "Key": MARKER, "ConsistentRead": True}),
        ("scan", {"Items": items}, scan),
    ]


def _moved_entry(key: str) -> tuple:
    ident = key.removeprefix("audit#")
    item = {"queue": {"S": f"audit#{ident[:10]}"}, "id": {"S": ident}}
    return (
        ("put_item", {}, {"TableName": "outbox", "Item": {**item, "action": {"S": "node.remove"}}}),
        ("delete_item", {}, {"TableName": "limits", "Key": {"key": {"S": key}}}),
    )


def _day(day: str) -> tuple:
    item = {"queue": {"S": "audit"}, "id": {"S": day}}
    return ("put_item", {}, {"TableName": "outbox", "Item": item})


def test_moved_audit_entries_list_each_day_once_and_before_its_first_entry(stubbed):
    outbox, stubber = stubbed
    first, second, third = (
        "audit#2026-12-01T08:00:00.000000Z#01",
        "audit#2026-12-01T09:00:00.000000Z#02",
        "audit#2026-12-02T08:00:00.000000Z#03",
    )
    for call in (
        *_older_layout(first, second, third),
        _day("2026-12-01"),
        *_moved_entry(first),
        *_moved_entry(second),
        _day("2026-12-02"),
        *_moved_entry(third),
        ("delete_item", {}, {"TableName": "outbox", "Key": MARKER}),
    ):
        stubber.add_response(*call)

    assert outbox.upgrade.move_if_due() == 3


def test_an_audit_entry_is_not_moved_before_its_day_is_listed(stubbed):
    outbox, stubber = stubbed
    entry = "audit#2026-12-01T08:00:00.000000Z#01"
    for call in _older_layout(entry):
        stubber.add_response(*call)
    stubber.add_client_error(
        "put_item",
        "ProvisionedThroughputExceededException",
        http_status_code=400,
        expected_params=_day("2026-12-01")[2],
    )
    # The next drain looks again at once (this one did not finish): the day, then the entry.
    for call in (
        *_older_layout(entry),
        _day("2026-12-01"),
        *_moved_entry(entry),
        ("delete_item", {}, {"TableName": "outbox", "Key": MARKER}),
    ):
        stubber.add_response(*call)

    with pytest.raises(StoreUnavailableError, match="throttled"):
        outbox.upgrade.move_if_due()
    assert outbox.upgrade.move_if_due() == 1
