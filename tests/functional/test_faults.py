"""A CA or a ledger that fails: 503 with Retry-After, and never a certificate without a row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from nodecert.adapters.http import create_app
from nodecert.bootstrap import build_service
from nodecert.errors import BackendUnavailableError, StoreUnavailableError
from nodecert.ports import CertificateRecord, RevocationReason, SignedCertificate, SigningRequest

from ..conftest import ADMIN, make_settings


class FailingCA:
    """A CA that is down."""

    def __init__(self, chain: Sequence[x509.Certificate]) -> None:
        self._chain = chain

    def issue(self, request: SigningRequest) -> SignedCertificate:
        raise BackendUnavailableError("ca: throttled", retry_after=7)

    def chain(self) -> Sequence[x509.Certificate]:
        return self._chain

    def revoke(self, certificate_serial: int, reason: RevocationReason) -> None:
        raise BackendUnavailableError("ca: throttled", retry_after=7)


class FailingLedger:
    """Wraps the real store, failing every write of a new certificate."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def record(self, record: CertificateRecord) -> None:
        raise StoreUnavailableError("store: database is locked", retry_after=2)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def _client(tmp_path: Path) -> tuple[TestClient, object]:
    service = build_service(make_settings(tmp_path / "home"))
    service.authority.put_node(ADMIN, "n1", "alice")
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


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
def test_ledger_down_is_503_and_no_certificate_leaves(tmp_path: Path, key_type: str) -> None:
    client, service = _client(tmp_path)
    authority = service.authority  # type: ignore[attr-defined]
    authority.ledger = FailingLedger(authority.ledger)
    token = service.dev_issuer.mint("alice")  # type: ignore[attr-defined]
    response = client.post(
        "/generate-cert",
        json={"nodeId": "n1", "keyType": key_type},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert "BEGIN" not in response.text
