"""A CA or a ledger that fails: 503 with Retry-After, and never a certificate without a row."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from botocore.stub import Stubber
from cryptography import x509
from fastapi.testclient import TestClient

from nodecert.backends.acmpca.backend import ACMPCABackend, RetryPolicy
from nodecert.bootstrap import build_service
from nodecert.core.errors import BackendUnavailableError, StoreUnavailableError
from nodecert.core.values import (
    CertificateRecord,
    Commit,
    RevocationReason,
    SignedCertificate,
    SigningRequest,
)
from nodecert.http.app import create_app
from nodecert.store.sqlite.store import SQLiteStore
from tests.fakes import STUB_CA_ARN as CA_ARN
from tests.fakes import FakeTime, describe_ca, stubbed_pca

from ..conftest import ADMIN, make_settings


class FailingCA:
    """A CA that is down."""

    builds_in_process = False

    def __init__(self, chain: Sequence[x509.Certificate]) -> None:
        self._chain = chain

    def issue(self, request: SigningRequest) -> SignedCertificate:
        raise BackendUnavailableError("ca: throttled", retry_after=7)

    def chain(self) -> Sequence[x509.Certificate]:
        return self._chain

    def revoke(
        self, certificate_serial: int, reason: RevocationReason, *, issuer: str | None = None
    ) -> None:
        raise BackendUnavailableError("ca: throttled", retry_after=7)


class FailingLedger:
    """Wraps the real store, failing every write of a new certificate: ``at_once`` (as a
    store that commits before returning) or through the commit (as a group commit)."""

    def __init__(self, inner: object, *, at_once: bool) -> None:
        self._inner = inner
        self._at_once = at_once

    def record(self, record: CertificateRecord) -> Commit:
        error = StoreUnavailableError("store: database is locked", retry_after=2)
        if self._at_once:
            raise error
        return Commit.failed(error)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def _client(tmp_path: Path) -> tuple[TestClient, object]:
    service = build_service(make_settings(tmp_path / "home"))
    service.administration.put_node(ADMIN, "n1", "alice")
    return TestClient(create_app(service), raise_server_exceptions=False), service


def test_ca_down_is_503_with_retry_after_and_no_row(tmp_path: Path) -> None:
    client, service = _client(tmp_path)
    authority = service.authority  # type: ignore[attr-defined]
    authority.ca = FailingCA(authority.ca.chain())
    token = service.dev_issuer.mint("alice")  # type: ignore[attr-defined]
    response = client.post(
        "/generate-cert", json={"nodeId": "n1"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.json()["code"] == "ca_unavailable"
    assert authority.ledger.find(user_id="alice") == []


@pytest.mark.parametrize("at_once", [True, False], ids=["raises", "commit-fails"])
@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
def test_ledger_down_is_503_and_no_certificate_leaves(
    tmp_path: Path, key_type: str, at_once: bool, caplog: pytest.LogCaptureFixture
) -> None:
    client, service = _client(tmp_path)
    authority = service.authority  # type: ignore[attr-defined]
    authority.ledger = FailingLedger(authority.ledger, at_once=at_once)
    token = service.dev_issuer.mint("alice")  # type: ignore[attr-defined]
    response = client.post(
        "/generate-cert",
        json={"nodeId": "n1", "keyType": key_type},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert "BEGIN" not in response.text
    # The log never names a certificate that was dropped.
    assert "issued serial" not in caplog.text


# ACM PCA misbehaving, through the real backend on botocore's Stubber (moto cannot throttle
# or answer RequestInProgressException), and a SQLite file locked by another writer.


def _pca_client(tmp_path: Path, script: Callable[[Stubber], None]) -> tuple[TestClient, object]:
    client, stubber = stubbed_pca()
    describe_ca(stubber)
    script(stubber)
    stubber.activate()
    service = build_service(make_settings(tmp_path / "home"))
    clock = FakeTime()
    service.authority.ca = ACMPCABackend(
        client,
        ca_arn=CA_ARN,
        organization="nodecert",
        trust_domain="nodecert.local",
        retry=RetryPolicy(),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda: 0.5,
    )
    service.administration.put_node(ADMIN, "n1", "alice")
    return TestClient(create_app(service), raise_server_exceptions=False), service


def _issued(stubber: Stubber) -> None:
    stubber.add_response("issue_certificate", {"CertificateArn": f"{CA_ARN}/certificate/abc"})


SCRIPTS = {
    "throttled": lambda s: [
        s.add_client_error("issue_certificate", "ThrottlingException", http_status_code=400)
        for _ in range(10)
    ],
    "failing": lambda s: [
        s.add_client_error("issue_certificate", "InternalFailure", http_status_code=500)
        for _ in range(10)
    ],
    "stuck in progress": lambda s: [
        _issued(s),
        *[s.add_client_error("get_certificate", "RequestInProgressException") for _ in range(200)],
    ],
}


@pytest.mark.parametrize("fault", sorted(SCRIPTS))
def test_pca_faults_are_503_with_retry_after_and_no_row(tmp_path: Path, fault: str) -> None:
    client, service = _pca_client(tmp_path, SCRIPTS[fault])
    token = service.dev_issuer.mint("alice")  # type: ignore[attr-defined]
    response = client.post(
        "/generate-cert",
        json={"nodeId": "n1", "keyType": "ec-p256"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["code"] == "ca_unavailable"
    assert "BEGIN" not in response.text
    assert service.authority.ledger.find(user_id="alice") == []  # type: ignore[attr-defined]


def test_a_locked_database_is_503_and_returns_no_certificate(tmp_path: Path) -> None:
    service = build_service(make_settings(tmp_path / "home"))
    service.administration.put_node(ADMIN, "n1", "alice")
    path = service.settings.database_path
    store = SQLiteStore(path, busy_timeout_s=0.2)
    service.authority.ledger = store
    service.authority.quota = dataclasses.replace(service.authority.quota, limiter=store)  # type: ignore[arg-type]
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # Another process holds the write lock.
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            token = service.dev_issuer.mint("alice")  # type: ignore[union-attr]
            response = client.post(
                "/generate-cert",
                json={"nodeId": "n1", "keyType": "ec-p256"},
                headers={"Authorization": f"Bearer {token}"},
            )
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "store_unavailable"
    assert "retry-after" in response.headers
    assert "BEGIN" not in response.text
    assert store.find(user_id="alice") == []
