"""The whole service on NODECERT_STORE=postgres: HTTP in, PostgreSQL rows out.

Two services on one database stand in for two nodecert servers behind a load balancer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from nodecert.bootstrap import build_service
from nodecert.core.errors import ConfigurationError
from nodecert.core.values import CertificateStatus
from nodecert.http.app import create_app
from nodecert.issuing.service import Service
from nodecert.store.postgres.store import PostgresStore

from ..conftest import make_settings

pytestmark = pytest.mark.postgres


@pytest.fixture
def services(tmp_path: Path, postgres_dsn: str) -> Iterator[list[Service]]:
    built: list[Service] = []
    # One home, so both servers share the local CA and the dev issuer, as real servers
    # share their CA; only the database is what makes them agree on rows and limits.
    home = tmp_path / "home"
    for _ in range(2):
        built.append(
            build_service(
                make_settings(
                    home,
                    store="postgres",
                    database_url=postgres_dsn,
                    quota_per_minute=2,
                    quota_burst=2,
                )
            )
        )
    yield built
    for service in built:
        service.close()


def _auth(service: Service, user: str, *, admin: bool = False) -> dict[str, str]:
    assert service.dev_issuer is not None
    group = service.settings.admin_group if admin else None
    return {"Authorization": f"Bearer {service.dev_issuer.mint(user, admin_group=group)}"}


def test_issue_list_revoke_and_rate_limit_across_two_servers(services, postgres_dsn, tmp_path):
    first, second = services
    with (
        TestClient(create_app(first), raise_server_exceptions=False) as a,
        TestClient(create_app(second), raise_server_exceptions=False) as b,
    ):
        put = a.put(
            "/v1/nodes/n1", json={"owner": "alice"}, headers=_auth(first, "ops", admin=True)
        )
        assert put.status_code in (200, 201), put.text
        assert (
            b.get("/v1/nodes", headers=_auth(second, "ops", admin=True)).json()["nodes"][0]["owner"]
            == "alice"
        )

        issued = a.post(
            "/generate-cert",
            json={"nodeId": "n1", "keyType": "ec-p256"},
            headers=_auth(first, "alice"),
        )
        assert issued.status_code == 201, issued.text
        serial = issued.json()["serialNumber"]
        certificate = x509.load_pem_x509_certificate(issued.json()["certificate"].encode())
        assert f"{certificate.serial_number:x}" == serial

        # The other server lists it: the row is in PostgreSQL, not in a local file.
        listed = b.get("/v1/certificates", headers=_auth(second, "alice")).json()
        assert [c["serialNumber"] for c in listed["certificates"]] == [serial]
        assert listed["certificates"][0]["status"] == "active"
        assert not (tmp_path / "home" / "nodecert.db").exists()

        revoked = b.post(
            f"/v1/certificates/{serial}/revoke",
            json={"reason": "keyCompromise"},
            headers=_auth(second, "alice"),
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["status"] == "revoked"
        shown = a.get(f"/v1/certificates/{serial}", headers=_auth(first, "alice")).json()
        assert (shown["status"], shown["revocationReason"]) == ("revoked", "keyCompromise")

        # quota_per_minute=2, burst 2: one bucket for the user, whichever server answers.
        again = b.post("/generate-cert", json={"nodeId": "n1"}, headers=_auth(second, "alice"))
        assert again.status_code == 201, again.text
        refused = a.post("/generate-cert", json={"nodeId": "n1"}, headers=_auth(first, "alice"))
        assert refused.status_code == 429, refused.text
        assert refused.json()["detail"].startswith("rate:")
        assert 1 <= int(refused.headers["retry-after"]) <= 30

    reader = PostgresStore(postgres_dsn)
    try:
        rows = reader.find(user_id="alice", node_id="n1")
        assert len(rows) == 2
        assert {r.status for r in rows} == {CertificateStatus.ACTIVE, CertificateStatus.REVOKED}
    finally:
        reader.close()


def test_postgres_without_a_url_is_a_configuration_error(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="NODECERT_DATABASE_URL: required"):
        build_service(make_settings(tmp_path / "home", store="postgres"))


def test_the_service_sizes_and_closes_its_pool(tmp_path: Path, postgres_dsn: str):
    service = build_service(
        make_settings(
            tmp_path / "home", store="postgres", database_url=postgres_dsn, database_pool_size=3
        )
    )
    store = service.authority.ledger
    assert isinstance(store, PostgresStore)
    assert store._pool.max_size == 3  # NODECERT_DATABASE_POOL_SIZE
    service.close()
    assert store._pool.closed


def test_ec_issuance_waits_on_the_database_off_the_event_loop(
    services: list[Service], monkeypatch: pytest.MonkeyPatch
):
    # With a local CA and SQLite, EC issuance runs on the event loop; a network database
    # must not stall the loop, so the ledger write happens on a worker thread.
    service = services[0]
    store = service.authority.ledger
    threads: list[str] = []
    record = store.record

    def spy(row):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return record(row)

    monkeypatch.setattr(store, "record", spy)
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        service.authority.nodes.put_node("n1", "alice", at=datetime.now(UTC))
        issued = client.post(
            "/generate-cert",
            json={"nodeId": "n1", "keyType": "ec-p256"},
            headers=_auth(service, "alice"),
        )
    assert issued.status_code == 201, issued.text
    assert len(threads) == 1
    assert threads[0].startswith("AnyIO worker thread"), threads
