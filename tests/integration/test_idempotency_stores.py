"""IdempotencyGuard on every store's single-use facility: SQLite, PostgreSQL, DynamoDB."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nodecert.core.errors import ConflictError, IdempotencyKeyReusedError, IdempotentReplayError
from nodecert.core.identity import Identity
from nodecert.issuing.idempotency import IdempotencyGuard
from nodecert.testing.stores import MemoryStore
from tests.records import certificate

ALICE = Identity(user_id="alice", node_id="node-1")
# The stores judge expiry by the real clock (as in production, where the guard's "now" is
# the authority's real clock), so claims are made at the real time here.
T0 = datetime.now(UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "dynamodb"])
def stores(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[Any, Any]]:
    """(ledger, single-use facility) of one store."""
    if request.param == "sqlite":
        from nodecert.store.sqlite.store import SQLiteStore

        opened: Any = SQLiteStore(tmp_path / "nodecert.db")
        yield opened, opened
        opened.close()
    elif request.param == "postgres":
        from nodecert.store.postgres.store import PostgresStore

        opened = PostgresStore(request.getfixturevalue("postgres_dsn"))
        yield opened, opened
        opened.close()
    else:
        from nodecert.store.dynamodb.limits import DynamoDBLimits
        from nodecert.store.dynamodb.store import DynamoDBStore, create_tables

        client = request.getfixturevalue("aws_client")("dynamodb")
        unique = request.getfixturevalue("unique")
        names = {
            "nodes_table": f"nodes-{unique}",
            "certificates_table": f"certificates-{unique}",
            "limits_table": f"limits-{unique}",
        }
        create_tables(client, **names)
        ledger = DynamoDBStore(
            client, nodes_table=names["nodes_table"], certificates_table=names["certificates_table"]
        )
        yield ledger, DynamoDBLimits(client, table=names["limits_table"])
        for name in names.values():
            client.delete_table(TableName=name)


def test_first_use_then_replay_with_the_serial_then_reuse_refused(stores):
    ledger, replay = stores
    guard = IdempotencyGuard(replay, ledger)
    guard.claim("idem-k1", ALICE, "hash-a", now=T0)  # First use: the CA may sign.

    with pytest.raises(IdempotentReplayError) as pending:
        guard.claim("idem-k1", ALICE, "hash-a", now=T0)
    assert pending.value.serial_number is None  # Not recorded yet: in progress or failed.

    ledger.record(
        dataclasses.replace(certificate("0abc", node="node-1"), request_id="idem-k1")
    ).wait()
    with pytest.raises(IdempotentReplayError) as done:
        guard.claim("idem-k1", ALICE, "hash-a", now=T0)
    assert done.value.serial_number == "0abc"

    with pytest.raises(IdempotencyKeyReusedError):
        guard.claim("idem-k1", ALICE, "hash-b", now=T0)


def test_claims_expire_after_their_ttl(stores):
    ledger, replay = stores
    guard = IdempotencyGuard(replay, ledger, ttl=timedelta(minutes=5))
    guard.claim("idem-k2", ALICE, "hash-a", now=T0 - timedelta(hours=1))
    guard.claim("idem-k2", ALICE, "hash-a", now=T0)  # Expired: the key is free again.


def test_requests_without_a_client_key_are_never_claimed(stores):
    ledger, replay = stores
    guard = IdempotencyGuard(replay, ledger)
    for _ in range(2):
        guard.claim("3f2a9c0d", ALICE, "hash-a", now=T0)


def test_a_released_claim_is_claimed_again_by_the_retry(stores):
    ledger, replay = stores
    guard = IdempotencyGuard(replay, ledger)
    claim = guard.claim("idem-k3", ALICE, "hash-a", now=T0)
    assert claim is not None

    guard.release(claim)  # The request failed before the CA accepted anything.

    assert guard.claim("idem-k3", ALICE, "hash-a", now=T0) is not None  # The retry.
    with pytest.raises(IdempotentReplayError):
        guard.claim("idem-k3", ALICE, "hash-a", now=T0)
    with pytest.raises(IdempotencyKeyReusedError):
        guard.claim("idem-k3", ALICE, "hash-b", now=T0)


def test_release_forgets_only_the_callers_own_record(stores):
    _, replay = stores
    expires = T0 + timedelta(hours=1)
    replay.use_once("k-mine", expires_at=expires)

    replay.release("k-mine", expires_at=expires + timedelta(hours=1))  # Not this record.
    replay.release("k-never-used", expires_at=expires)  # Nothing there: not an error.

    with pytest.raises(ConflictError):
        replay.use_once("k-mine", expires_at=expires)
    replay.release("k-mine", expires_at=expires)
    replay.use_once("k-mine", expires_at=expires)


def test_a_key_reused_for_another_request_is_400_on_every_try(stores):
    # The refused request's own entry is released: its retry is not taken for a replay.
    ledger, replay = stores
    guard = IdempotencyGuard(replay, ledger)
    guard.claim("idem-k4", ALICE, "hash-a", now=T0)
    for _ in range(2):
        with pytest.raises(IdempotencyKeyReusedError):
            guard.claim("idem-k4", ALICE, "hash-b", now=T0)


def test_a_store_down_during_release_leaves_the_claim_and_raises_nothing(caplog):
    store = MemoryStore()
    guard = IdempotencyGuard(store, store)
    claim = guard.claim("idem-k5", ALICE, "hash-a", now=T0)
    assert claim is not None
    store.down = True

    guard.release(claim)  # The request's own error is what its caller must see.

    assert "could not be released" in caplog.text
    store.down = False
    with pytest.raises(IdempotentReplayError):
        guard.claim("idem-k5", ALICE, "hash-a", now=T0)
