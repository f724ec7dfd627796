"""The shipped fake store's single-use keys and token buckets (its ledger and node
directory run the store contract in tests/integration/test_store_contract.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nodecert.core.errors import ConflictError, StoreUnavailableError
from nodecert.testing import MemoryStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TAKE = {"capacity": 2.0, "refill_per_s": 1.0}


def test_a_key_is_used_once_until_it_expires() -> None:
    store = MemoryStore()
    store.use_once("jti-1", expires_at=datetime.now(UTC) + timedelta(minutes=5))
    with pytest.raises(ConflictError, match="already used"):
        store.use_once("jti-1", expires_at=datetime.now(UTC) + timedelta(minutes=5))
    store.use_once("jti-2", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    store.use_once("jti-2", expires_at=datetime.now(UTC) + timedelta(minutes=5))  # Expired.


def test_the_bucket_refills_with_time_and_never_beyond_its_capacity() -> None:
    store = MemoryStore()
    assert store.take_token("u", now=T0, **TAKE) == 0.0
    assert store.take_token("u", now=T0, **TAKE) == 0.0
    assert store.take_token("u", now=T0, **TAKE) == 1.0
    assert store.take_token("u", now=T0 + timedelta(seconds=0.5), **TAKE) == 0.5
    assert store.take_token("u", now=T0 + timedelta(seconds=1), **TAKE) == 0.0
    later = T0 + timedelta(hours=1)
    assert [store.take_token("u", now=later, **TAKE) for _ in range(3)] == [0.0, 0.0, 1.0]
    assert store.take_token("v", now=later, **TAKE) == 0.0  # Buckets are per key.


def test_a_store_that_is_down_fails_every_call_and_counts_them() -> None:
    store = MemoryStore()
    store.down = True
    with pytest.raises(StoreUnavailableError):
        store.owner_of("n1")
    with pytest.raises(StoreUnavailableError):
        store.take_token("u", now=T0, **TAKE)
    assert store.calls == 2
