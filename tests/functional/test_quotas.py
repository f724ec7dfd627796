"""Quotas: active certificates per (user, node) and the per-user issuance rate, as 429s."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from nodecert.bootstrap import build_service
from nodecert.http.app import create_app
from nodecert.store.sqlite.store import SQLiteStore

from ..conftest import ADMIN, make_settings


def _client(tmp_path: Path, **settings: object) -> tuple[TestClient, object]:
    service = build_service(make_settings(tmp_path / "home", **settings))
    service.administration.put_node(ADMIN, "n1", "alice")
    service.administration.put_node(ADMIN, "n2", "alice")
    return TestClient(create_app(service)), service


def _issue(client: TestClient, service: object, node: str = "n1") -> object:
    token = service.dev_issuer.mint("alice")  # type: ignore[attr-defined]
    return client.post(
        "/generate-cert",
        json={"nodeId": node, "keyType": "ec-p256"},
        headers={"Authorization": f"Bearer {token}"},
    )


def test_active_certificates_per_node_are_capped(tmp_path: Path) -> None:
    client, service = _client(tmp_path, max_active_per_node=3, quota_per_minute=0)
    serials = [_issue(client, service).json()["serialNumber"] for _ in range(3)]  # type: ignore[attr-defined]
    refused = _issue(client, service)
    assert refused.status_code == 429  # type: ignore[attr-defined]
    problem = refused.json()  # type: ignore[attr-defined]
    assert problem["code"] == "quota_exceeded"
    assert "3 active certificates" in problem["detail"]
    # Retry-After points at the soonest expiry (7 days), not at "1 second".
    assert int(refused.headers["retry-after"]) > 6 * 24 * 3600  # type: ignore[attr-defined]
    assert service.authority.ledger.find(node_id="n1").__len__() == 3  # type: ignore[attr-defined]
    # Another node has its own allowance; revoking one frees a place.
    assert _issue(client, service, "n2").status_code == 201  # type: ignore[attr-defined]
    token = service.dev_issuer.mint("alice")  # type: ignore[attr-defined]
    client.post(
        f"/v1/certificates/{serials[0]}/revoke", headers={"Authorization": f"Bearer {token}"}
    )
    assert _issue(client, service).status_code == 201  # type: ignore[attr-defined]


def test_issuance_rate_per_user(tmp_path: Path) -> None:
    client, service = _client(tmp_path, quota_per_minute=2, quota_burst=2, max_active_per_node=0)
    statuses = [_issue(client, service).status_code for _ in range(3)]  # type: ignore[attr-defined]
    assert statuses == [201, 201, 429]
    refused = _issue(client, service)
    assert refused.json()["detail"].startswith("rate:")  # type: ignore[attr-defined]
    assert 1 <= int(refused.headers["retry-after"]) <= 30  # type: ignore[attr-defined]
    assert len(service.authority.ledger.find(user_id="alice")) == 2  # type: ignore[attr-defined]


def test_the_bucket_refills_with_time_and_holds_across_store_handles(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    first, second = SQLiteStore(path), SQLiteStore(path)  # Two workers, one file.
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    take = {"capacity": 2.0, "refill_per_s": 1.0}
    assert first.take_token("u", now=t0, **take) == 0.0
    assert second.take_token("u", now=t0, **take) == 0.0
    wait = first.take_token("u", now=t0, **take)
    assert wait == 1.0
    assert second.take_token("u", now=t0 + timedelta(seconds=0.5), **take) == 0.5
    assert first.take_token("u", now=t0 + timedelta(seconds=1), **take) == 0.0
    # Never more than the capacity, however long the bucket rested.
    later = t0 + timedelta(hours=1)
    assert [second.take_token("u", now=later, **take) for _ in range(3)] == [0.0, 0.0, 1.0]


def test_concurrent_workers_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    SQLiteStore(path)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    granted: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        store = SQLiteStore(path)
        for _ in range(25):
            result = store.take_token("u", capacity=30.0, refill_per_s=0.0001, now=now)
            with lock:
                granted.append(result)
        store.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for g in granted if g == 0.0) == 30
