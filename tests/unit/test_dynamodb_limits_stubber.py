"""DynamoDBLimits against botocore's Stubber: the wire shape and the paths moto cannot force.

The Stubber checks every request against the real DynamoDB service model. The bucket is a
GCRA "full again at" time (see ``DynamoDBLimits.take_token``): with capacity 2 and one
token a second, a bucket with ``fullAt <= now + 1`` still has a token.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from nodecert.core.errors import ConflictError, StoreUnavailableError
from nodecert.store.dynamodb.limits import DynamoDBLimits

TABLE = "limits"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
T = int(NOW.timestamp())
KEY = {"key": {"S": "bucket#issue:alice"}}
TAKE = {"capacity": 2.0, "refill_per_s": 1.0, "now": NOW}
# Full again in 2 s at the latest, deleted a minute after that.
EXPIRES = {":expires": {"N": str(T + 2 + 60)}}
NAMES = {"#expires": "expiresAt"}
CONFLICT = "ConditionalCheckFailedException"


@pytest.fixture
def client():
    return boto3.client(
        "dynamodb",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def stub(client):
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def limits(client):
    return DynamoDBLimits(client, table=TABLE)


def when_full(stub, *, error=None, full_at=None):
    """The first update: the bucket is full (or absent), so it becomes 'full in 1 s'."""
    params = {
        "TableName": TABLE,
        "Key": KEY,
        "UpdateExpression": "SET fullAt = :next, #expires = :expires",
        "ConditionExpression": "attribute_not_exists(fullAt) OR fullAt <= :now",
        "ExpressionAttributeNames": NAMES,
        "ExpressionAttributeValues": {
            ":next": {"N": f"{T + 1}.0"},
            ":now": {"N": f"{T}.0"},
            **EXPIRES,
        },
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    _expect(stub, params, error, full_at)


def when_left(stub, *, error=None, full_at=None):
    """The second update: a token is left, so the bucket is full one interval later."""
    params = {
        "TableName": TABLE,
        "Key": KEY,
        "UpdateExpression": "SET fullAt = fullAt + :interval, #expires = :expires",
        "ConditionExpression": "fullAt > :now AND fullAt <= :limit",
        "ExpressionAttributeNames": NAMES,
        "ExpressionAttributeValues": {
            ":interval": {"N": "1.0"},
            ":now": {"N": f"{T}.0"},
            ":limit": {"N": f"{T + 1}.0"},
            **EXPIRES,
        },
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    _expect(stub, params, error, full_at)


def _expect(stub, params, error, full_at):
    if error is None:
        stub.add_response("update_item", {}, params)
        return
    fields = {} if full_at is None else {"Item": {**KEY, "fullAt": {"N": str(full_at)}}}
    stub.add_client_error(
        "update_item",
        service_error_code=error,
        http_status_code=400,
        expected_params=params,
        modeled_fields=fields,
    )


def test_a_new_or_full_bucket_takes_one_conditional_update(limits, stub):
    when_full(stub)
    assert limits.take_token("issue:alice", **TAKE) == 0.0


def test_a_bucket_in_use_takes_from_what_is_left(limits, stub):
    # Another caller took a token just before: full again in 0.5 s, so one is left.
    when_full(stub, error=CONFLICT, full_at=T + 0.5)
    when_left(stub)
    assert limits.take_token("issue:alice", **TAKE) == 0.0


def test_an_empty_bucket_answers_the_wait_from_the_first_refusal(limits, stub):
    # Full again in 1.75 s: no token until 0.75 s from now; no second update is tried.
    when_full(stub, error=CONFLICT, full_at=T + 1.75)
    assert limits.take_token("issue:alice", **TAKE) == 0.75


def test_the_last_token_taken_in_between_is_a_refusal(limits, stub):
    when_full(stub, error=CONFLICT, full_at=T + 0.5)
    when_left(stub, error=CONFLICT, full_at=T + 1.5)
    assert limits.take_token("issue:alice", **TAKE) == 0.5


def test_without_the_old_item_in_the_error_it_is_read(limits, stub):
    # Services (or SDKs) that do not return the item on a failed condition.
    when_full(stub, error=CONFLICT)
    when_left(stub, error=CONFLICT)
    stub.add_response(
        "get_item",
        {"Item": {**KEY, "fullAt": {"N": f"{T + 2}"}}},
        {"TableName": TABLE, "Key": KEY, "ConsistentRead": True},
    )
    assert limits.take_token("issue:alice", **TAKE) == 1.0


def test_a_bucket_deleted_between_the_updates_asks_for_one_interval(limits, stub):
    when_full(stub, error=CONFLICT)
    when_left(stub, error=CONFLICT)
    stub.add_response("get_item", {}, {"TableName": TABLE, "Key": KEY, "ConsistentRead": True})
    assert limits.take_token("issue:alice", **TAKE) == 1.0


def test_throttling_is_translated_not_retried_here(limits, stub):
    # botocore's own retries (standard mode) have already run when this surfaces.
    stub.add_client_error(
        "update_item", service_error_code="ProvisionedThroughputExceededException"
    )
    with pytest.raises(StoreUnavailableError, match="throttled") as caught:
        limits.take_token("issue:alice", **TAKE)
    assert caught.value.retry_after == 1
    assert isinstance(caught.value.__cause__, ClientError)


def test_a_bucket_must_refill(limits):
    with pytest.raises(ValueError, match="refill_per_s"):
        limits.take_token("issue:alice", capacity=1.0, refill_per_s=0.0, now=NOW)


def test_use_once_is_one_conditional_put(limits, stub):
    expires = NOW + timedelta(minutes=5, seconds=0.5)
    params = {
        "TableName": TABLE,
        "Item": {"key": {"S": "once#k1"}, "expiresAt": {"N": str(T + 301)}},
        "ConditionExpression": "attribute_not_exists(#k) OR #expires < :now",
        "ExpressionAttributeNames": {"#k": "key", "#expires": "expiresAt"},
        "ExpressionAttributeValues": {":now": {"N": str(T)}},
    }
    stub.add_response("put_item", {}, params)
    stub.add_client_error(
        "put_item", service_error_code=CONFLICT, http_status_code=400, expected_params=params
    )
    limits.use_once("k1", expires_at=expires, now=NOW)
    with pytest.raises(ConflictError, match="token: already used") as caught:
        limits.use_once("k1", expires_at=expires, now=NOW)
    assert isinstance(caught.value.__cause__, ClientError)


def test_release_is_one_conditional_delete_of_the_callers_own_record(limits, stub):
    expires = NOW + timedelta(hours=24, seconds=0.5)
    params = {
        "TableName": TABLE,
        "Key": {"key": {"S": "once#k1"}},
        "ConditionExpression": "#expires = :expires",
        "ExpressionAttributeNames": {"#expires": "expiresAt"},
        "ExpressionAttributeValues": {":expires": {"N": str(T + 86401)}},
    }
    stub.add_response("delete_item", {}, params)
    # Gone already, or another claim's record (another expiry): nothing to forget.
    stub.add_client_error(
        "delete_item", service_error_code=CONFLICT, http_status_code=400, expected_params=params
    )
    stub.add_client_error("delete_item", "ProvisionedThroughputExceededException", 400)

    limits.release("k1", expires_at=expires)
    limits.release("k1", expires_at=expires)
    with pytest.raises(StoreUnavailableError, match="throttled"):
        limits.release("k1", expires_at=expires)
