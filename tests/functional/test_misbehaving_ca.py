"""A remote CA that signs something else than asked must never hand out a credential."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509

from nodecert.backends.local.ca import LocalCA
from nodecert.bootstrap import build_service
from nodecert.core.errors import BackendUnavailableError, ConflictError
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, generate_private_key
from nodecert.core.values import Principal, RevocationReason, SignedCertificate, SigningRequest
from nodecert.issuing.authority import IssueRequest

from ..conftest import ADMIN, make_settings


class RemoteCA:
    """Stands for a remote CA (``builds_in_process`` false) that twists each request."""

    builds_in_process = False

    def __init__(self, inner: LocalCA, twist: str) -> None:
        self.inner, self.twist = inner, twist
        self.saw_csr: list[bool] = []

    def issue(self, request: SigningRequest) -> SignedCertificate:
        self.saw_csr.append(request.csr is not None)
        if self.twist == "other key":
            other = generate_private_key(KeyType.EC_P256).public_key()
            request = replace(request, public_key=other)
        elif self.twist == "other identity":
            request = replace(request, identity=Identity("mallory", request.identity.node_id))
        return self.inner.issue(request)

    def chain(self) -> Sequence[x509.Certificate]:
        return self.inner.chain()

    def revoke(
        self, certificate_serial: int, reason: RevocationReason, *, issuer: str | None = None
    ) -> None:
        pass


@pytest.mark.parametrize("twist", ["other key", "other identity", "faithful"])
def test_the_authority_checks_what_a_remote_ca_returns(tmp_path: Path, twist: str) -> None:
    service = build_service(make_settings(tmp_path / "home"))
    service.administration.put_node(ADMIN, "n1", "alice")
    local = service.authority.ca
    assert isinstance(local, LocalCA)
    remote = RemoteCA(local, twist)
    service.authority.ca = remote
    request = IssueRequest(node_id="n1", request_id="r1", key_type="ec-p256")
    if twist == "faithful":
        issued = service.authority.issue(Principal("alice"), request)
        assert issued.record.user_id == "alice"
    else:
        with pytest.raises(BackendUnavailableError, match="ca: returned a certificate"):
            service.authority.issue(Principal("alice"), request)
        assert service.authority.ledger.find(user_id="alice") == []
    # A remote CA always gets a CSR; the local CA needs none.
    assert remote.saw_csr == [True]


class IdempotentCA(RemoteCA):
    """A remote CA that answers a repeated request id with the certificate it issued."""

    def __init__(self, inner: LocalCA) -> None:
        super().__init__(inner, "faithful")
        self.issued: dict[str, SignedCertificate] = {}

    def issue(self, request: SigningRequest) -> SignedCertificate:
        if request.request_id not in self.issued:
            self.issued[request.request_id] = super().issue(request)
        return self.issued[request.request_id]


def test_a_retried_request_gets_the_same_certificate_once_recorded(tmp_path: Path) -> None:
    # Request ids without the client Idempotency-Key prefix: those are refused before the
    # CA (tests/functional/test_idempotency.py); this is the CA answering a request id again.
    service = build_service(make_settings(tmp_path / "home"))
    service.administration.put_node(ADMIN, "n1", "alice")
    local = service.authority.ca
    assert isinstance(local, LocalCA)
    service.authority.ca = IdempotentCA(local)
    csr = _client_csr()
    first = service.authority.issue(
        Principal("alice"), IssueRequest(node_id="n1", request_id="retry-1", csr=csr)
    )
    again = service.authority.issue(
        Principal("alice"), IssueRequest(node_id="n1", request_id="retry-1", csr=csr)
    )
    assert again.certificate_pem == first.certificate_pem
    assert len(service.authority.ledger.find(user_id="alice")) == 1
    # Another request that comes back with an already recorded serial is still a clash.
    service.authority.ca.issued["retry-2"] = service.authority.ca.issued["retry-1"]
    with pytest.raises(ConflictError):
        service.authority.issue(
            Principal("alice"), IssueRequest(node_id="n1", request_id="retry-2", csr=csr)
        )


def _client_csr() -> str:
    from cryptography.hazmat.primitives import hashes, serialization

    key = generate_private_key(KeyType.EC_P256)
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
