"""DynamoDBLimits against a moto server: single-use tokens and token buckets.

The bucket expectations are the SQLite ones (``tests/functional/test_quotas.py``): both
stores implement one ``RateLimiter`` contract.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nodecert.core.errors import ConflictError, StoreUnavailableError
from nodecert.core.ports import RateLimiter, ReplayGuard
from nodecert.store.dynamodb.limits import DynamoDBLimits
from nodecert.store.dynamodb.store import DynamoDBStore, create_tables

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TAKE = {"capacity": 2.0, "refill_per_s": 1.0}


@pytest.fixture
def table(aws_client, unique):
    client = aws_client("dynamodb")
    names = {
        "nodes_table": f"nodes-{unique}",
        "certificates_table": f"certificates-{unique}",
        "limits_table": f"limits-{unique}",
    }
    create_tables(client, **names)
    yield client, names["limits_table"]
    for name in names.values():
        client.delete_table(TableName=name)


@pytest.fixture
def limits(table):
    client, name = table
    return DynamoDBLimits(client, table=name)


def test_the_limits_table_expires_items_by_ttl(table):
    client, name = table
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expiresAt")


def test_abilities_belong_to_the_limits_not_to_the_store(limits, table):
    client, _ = table
    store = DynamoDBStore(client, nodes_table="n", certificates_table="c")
    replay: ReplayGuard = limits
    limiter: RateLimiter = limits
    assert callable(replay.use_once) and callable(limiter.take_token)
    assert not hasattr(store, "use_once") and not hasattr(store, "take_token")


# ReplayGuard


def test_a_key_is_used_once(limits):
    limits.use_once("k1", expires_at=T0 + timedelta(minutes=5), now=T0)
    with pytest.raises(ConflictError, match="token: already used"):
        limits.use_once("k1", expires_at=T0 + timedelta(minutes=5), now=T0 + timedelta(minutes=1))
    limits.use_once("k2", expires_at=T0 + timedelta(minutes=5), now=T0)


def test_an_expired_key_that_ttl_has_not_deleted_yet_can_be_used_again(limits):
    limits.use_once("k1", expires_at=T0 + timedelta(minutes=5), now=T0)
    later = T0 + timedelta(minutes=5, seconds=2)
    limits.use_once("k1", expires_at=later + timedelta(minutes=5), now=later)
    # ... and is then held again until its new expiry.
    with pytest.raises(ConflictError):
        limits.use_once("k1", expires_at=later + timedelta(minutes=5), now=later)


def test_without_an_injected_time_the_real_clock_is_used(limits):
    soon = datetime.now(UTC) + timedelta(minutes=5)
    limits.use_once("k1", expires_at=soon)
    with pytest.raises(ConflictError):
        limits.use_once("k1", expires_at=soon)
    limits.use_once("k2", expires_at=datetime.now(UTC) - timedelta(minutes=1))
    limits.use_once("k2", expires_at=soon)


# RateLimiter


def test_the_bucket_refills_with_time_and_never_beyond_its_capacity(limits, table):
    client, name = table
    other = DynamoDBLimits(client, table=name)  # Another Lambda instance, the same table.
    assert limits.take_token("u", now=T0, **TAKE) == 0.0
    assert other.take_token("u", now=T0, **TAKE) == 0.0
    assert limits.take_token("u", now=T0, **TAKE) == 1.0
    assert other.take_token("u", now=T0 + timedelta(seconds=0.5), **TAKE) == 0.5
    assert limits.take_token("u", now=T0 + timedelta(seconds=1), **TAKE) == 0.0
    later = T0 + timedelta(hours=1)
    assert [other.take_token("u", now=later, **TAKE) for _ in range(3)] == [0.0, 0.0, 1.0]
    # Buckets are per key.
    assert limits.take_token("v", now=later, **TAKE) == 0.0


def test_a_bucket_expires_after_it_is_full_again(limits, table):
    client, name = table
    limits.take_token("u", now=T0, **TAKE)
    limits.take_token("u", now=T0, **TAKE)
    item = client.get_item(TableName=name, Key={"key": {"S": "bucket#u"}})["Item"]
    # Empty at T0, full 2 s later, deleted after a margin: never while it could matter.
    assert float(item["fullAt"]["N"]) == T0.timestamp() + 2
    assert int(item["expiresAt"]["N"]) == int(T0.timestamp()) + 2 + 60


def test_instances_share_one_bucket_and_never_overspend(table):
    # Eight instances (like separate Lambda instances) take turns on one bucket: the
    # state lives in the table, not in any instance. This runs them one call at a time on
    # purpose: moto's server does not apply conditional writes atomically under
    # concurrency, so a threaded run here would test moto, not DynamoDB. What makes
    # concurrent callers safe on DynamoDB is the shape of the conditional updates, which
    # tests/unit/test_dynamodb_limits_stubber.py checks against the service model
    # (including a token taken by another caller between the two updates).
    client, name = table
    instances = [DynamoDBLimits(client, table=name) for _ in range(8)]
    granted: list[float] = []
    for _ in range(10):
        for instance in instances:
            granted.append(instance.take_token("u", capacity=30.0, refill_per_s=0.0001, now=T0))
    assert granted[:30] == [0.0] * 30
    assert all(wait > 0 for wait in granted[30:])
    assert len(granted) == 80


def test_a_missing_limits_table_is_a_clear_store_error(aws_client, unique):
    limits = DynamoDBLimits(aws_client("dynamodb"), table=f"absent-{unique}")
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        limits.take_token("u", now=T0, **TAKE)
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        limits.use_once("k", expires_at=T0, now=T0)
