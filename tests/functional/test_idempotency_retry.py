"""A retry with the same ``Idempotency-Key`` after a failure: a certificate, or an honest 409.

When the first request failed where it is known that the CA accepted nothing, the claim is
released and the retry gets its certificate (201): ACM PCA throttling every attempt,
refusing outright (``ValidationException``, a malformed CSR), not even described, the
request's deadline passing before ``IssueCertificate`` was sent, the store failing between
the claim's two entries, the local CA failing. When PCA may have accepted the request (a
5xx answer, ``RequestInProgressException`` until the deadline) or the ledger failed after
the CA signed, the retry gets the 409 and PCA is not asked again.

Through both fronts (FastAPI, and the Lambda adapter fed the recorded REST event, whose
``Idempotency-Key`` is ``retry-safe-1``), on botocore's Stubber: a second
``IssueCertificate`` that was not scripted fails the test, and every scripted answer must
be used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from nodecert.aws.handler import LambdaApp
from nodecert.backends.acmpca.backend import ACMPCABackend, RetryPolicy
from nodecert.backends.local.ca import LocalCA
from nodecert.bootstrap import build_service
from nodecert.core.errors import BackendUnavailableError, StoreUnavailableError
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, PrivateKey, generate_private_key
from nodecert.core.values import CertificateRecord, Commit, SigningRequest
from nodecert.http.app import create_app
from nodecert.issuing.service import Service
from tests.fakes import STUB_CA_ARN as CA_ARN
from tests.fakes import FakeTime, describe_ca, stubbed_pca
from tests.kit import RECORDED_CLIENT_ID, api_event

from ..conftest import ADMIN, make_settings

ALICE = Identity(user_id="alice", node_id="node-1")
KEY = "retry-safe-1"  # The recorded event's Idempotency-Key.
TRUST_DOMAIN = "nodecert.local"


@pytest.fixture(scope="module")
def keys() -> dict[KeyType, PrivateKey]:
    # Fixed keys, so that PCA's scripted answer to the retry certifies the retry's key.
    return {KeyType.EC_P256: generate_private_key(KeyType.EC_P256)}


@pytest.fixture(scope="module")
def signer() -> LocalCA:
    return LocalCA.generate(organization="nodecert", trust_domain=TRUST_DOMAIN)


@dataclass
class Setup:
    service: Service
    stubber: Stubber
    clock: FakeTime
    front: str
    keys: dict[KeyType, PrivateKey]
    signer: LocalCA

    def request(self) -> tuple[int, dict[str, Any]]:
        """POST /generate-cert for alice's node-1 with the Idempotency-Key, via the front."""
        if self.front == "lambda":
            app = LambdaApp.for_service(self.service)
            app.client_ids = frozenset({RECORDED_CLIENT_ID})
            reply = app.handle(api_event("rest_generate_cert.json"))
            return reply["statusCode"], json.loads(reply["body"])
        token = self.service.dev_issuer.mint("alice")  # type: ignore[union-attr]
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": KEY}
        with TestClient(create_app(self.service), raise_server_exceptions=False) as http:
            body = {"nodeId": "node-1", "keyType": "ec-p256"}  # As in the recorded event.
            response = http.post("/generate-cert", json=body, headers=headers)
        return response.status_code, response.json()

    def issued(self) -> None:
        """Script PCA's acceptance of one IssueCertificate and the certificate it makes."""
        self.stubber.add_response(
            "issue_certificate", {"CertificateArn": f"{CA_ARN}/certificate/abc"}
        )
        now = datetime.now(UTC)
        certificate = self.signer.issue(
            SigningRequest(
                csr=None,
                identity=ALICE,
                not_before=now - timedelta(minutes=1),
                not_after=now + timedelta(days=7),
                request_id="scripted",
                public_key=self.keys[KeyType.EC_P256].public_key(),
            )
        ).certificate
        pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        ca_pem = self.signer.certificate.public_bytes(serialization.Encoding.PEM).decode()
        self.stubber.add_response(
            "get_certificate", {"Certificate": pem, "CertificateChain": ca_pem}
        )

    def rows(self) -> list[CertificateRecord]:
        return self.service.authority.ledger.find(user_id="alice")


@pytest.fixture(params=["fastapi", "lambda"])
def setup(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    keys: dict[KeyType, PrivateKey],
    signer: LocalCA,
) -> Iterator[Setup]:
    client, stubber = stubbed_pca()
    service = build_service(make_settings(tmp_path / "home"))
    clock = FakeTime()
    service.authority.ca = ACMPCABackend(
        client,
        ca_arn=CA_ARN,
        organization="nodecert",
        trust_domain=TRUST_DOMAIN,
        retry=RetryPolicy(),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda: 0.5,
    )
    service.authority.keygen = keys.__getitem__
    service.administration.put_node(ADMIN, "node-1", "alice")
    with stubber:
        yield Setup(service, stubber, clock, request.param, keys, signer)
        stubber.assert_no_pending_responses()  # Every scripted PCA answer was asked for.
    service.close()


def _throttled(s: Setup) -> None:
    describe_ca(s.stubber, key_algorithm="EC_prime256v1")
    for _ in range(RetryPolicy().max_attempts):
        s.stubber.add_client_error("issue_certificate", "ThrottlingException")


def _refused(s: Setup) -> None:
    describe_ca(s.stubber, key_algorithm="EC_prime256v1")
    s.stubber.add_client_error("issue_certificate", "ValidationException")


def _malformed_csr(s: Setup) -> None:
    describe_ca(s.stubber, key_algorithm="EC_prime256v1")
    s.stubber.add_client_error("issue_certificate", "MalformedCSRException")


def _not_described(s: Setup) -> None:
    s.stubber.add_client_error("describe_certificate_authority", "AccessDeniedException")
    describe_ca(s.stubber, key_algorithm="EC_prime256v1")  # The retry's.


def _deadline_before_sending(s: Setup) -> None:
    describe_ca(s.stubber, key_algorithm="EC_prime256v1")

    # Describing the CA takes the whole deadline: IssueCertificate is never sent.
    def slow(**_: object) -> None:
        s.clock.now += RetryPolicy().deadline + 1

    s.service.authority.ca._clients[CA_ARN].meta.events.register(  # type: ignore[attr-defined]
        "before-parameter-build.acm-pca.DescribeCertificateAuthority", slow
    )


RELEASED: dict[str, tuple[Callable[[Setup], None], int, str]] = {
    "throttled past the retries": (_throttled, 503, "ca_unavailable"),
    "ValidationException": (_refused, 503, "ca_unavailable"),
    "MalformedCSRException": (_malformed_csr, 400, "invalid_csr"),
    "CA not described": (_not_described, 503, "ca_unavailable"),
    "deadline before sending": (_deadline_before_sending, 503, "ca_unavailable"),
}


@pytest.mark.parametrize("case", sorted(RELEASED))
def test_a_retry_after_pca_accepted_nothing_gets_its_certificate(setup: Setup, case: str) -> None:
    script, status, code = RELEASED[case]
    script(setup)
    setup.issued()  # What the retry, and only the retry, gets.

    first_status, first = setup.request()
    assert (first_status, first["code"]) == (status, code), first
    assert setup.rows() == []

    retry_status, retry = setup.request()

    assert retry_status == 201, retry
    assert [row.serial for row in setup.rows()] == [retry["serialNumber"]]
    # The key stays claimed by the request that got its certificate.
    third_status, third = setup.request()
    assert (third_status, third["code"]) == (409, "idempotent_replay"), third
    assert third["serialNumber"] == retry["serialNumber"]


def _failing(s: Setup) -> None:
    describe_ca(s.stubber, key_algorithm="EC_prime256v1")
    for _ in range(RetryPolicy().max_attempts):
        s.stubber.add_client_error("issue_certificate", "InternalFailure", http_status_code=500)


def _in_progress(s: Setup) -> None:
    describe_ca(s.stubber, key_algorithm="EC_prime256v1")
    s.stubber.add_response("issue_certificate", {"CertificateArn": f"{CA_ARN}/certificate/abc"})
    for _ in range(8):  # Until the (fake) deadline.
        s.stubber.add_client_error("get_certificate", "RequestInProgressException")


class LedgerDown:
    """The real ledger, but every new certificate's row fails to commit."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def record(self, record: CertificateRecord) -> Commit:
        raise StoreUnavailableError("store: database is locked", retry_after=2)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def _ledger_down_after_signing(s: Setup) -> None:
    describe_ca(s.stubber, key_algorithm="EC_prime256v1")
    s.issued()
    s.service.authority.ledger = LedgerDown(s.service.authority.ledger)  # type: ignore[assignment]


KEPT: dict[str, Callable[[Setup], None]] = {
    "PCA answered 5xx": _failing,
    "in progress past the deadline": _in_progress,
    "ledger down after PCA signed": _ledger_down_after_signing,
}


@pytest.mark.parametrize("case", sorted(KEPT))
def test_a_retry_after_pca_may_have_signed_is_409_and_not_sent_again(
    setup: Setup, case: str
) -> None:
    KEPT[case](setup)

    first_status, first = setup.request()
    assert first_status == 503, first

    retry_status, retry = setup.request()

    # Nothing more was scripted: a second IssueCertificate would fail the Stubber.
    assert (retry_status, retry["code"]) == (409, "idempotent_replay"), retry
    assert "not finished" in retry["detail"]


# The embedded default (local CA, SQLite): failures before the CA, and of the CA.


class ReplayDownOnce:
    """The store's single-use facility, failing once at its ``fail_at``-th ``use_once``."""

    def __init__(self, inner: Any, fail_at: int) -> None:
        self._inner = inner
        self._calls = 0
        self._fail_at = fail_at

    def use_once(self, key: str, *, expires_at: datetime) -> None:
        self._calls += 1
        if self._calls == self._fail_at:
            raise StoreUnavailableError("store: database is locked", retry_after=1)
        self._inner.use_once(key, expires_at=expires_at)

    def release(self, key: str, *, expires_at: datetime) -> None:
        self._inner.release(key, expires_at=expires_at)


class LocalCADown:
    """The local CA, refusing once (its signer is a KMS key that is throttled)."""

    builds_in_process = True

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.failed = False

    def issue(self, request: SigningRequest) -> Any:
        if not self.failed:
            self.failed = True
            raise BackendUnavailableError("ca: KMS is throttling", retry_after=1)
        return self._inner.issue(request)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


@pytest.mark.parametrize("fault", ["store down between the claim's entries", "local CA down"])
@pytest.mark.parametrize("front", ["fastapi", "lambda"])
def test_on_the_embedded_default_a_retry_after_a_failure_before_signing_succeeds(
    tmp_path: Path, fault: str, front: str, keys: dict[KeyType, PrivateKey], signer: LocalCA
) -> None:
    service = build_service(make_settings(tmp_path / "home"))
    service.administration.put_node(ADMIN, "node-1", "alice")
    guard = service.authority.idempotency
    assert guard is not None
    if fault == "local CA down":
        service.authority.ca = LocalCADown(service.authority.ca)  # type: ignore[assignment]
        expected = "ca_unavailable"
    else:
        guard._replay = ReplayDownOnce(guard._replay, fail_at=2)  # type: ignore[assignment]
        expected = "store_unavailable"
    s = Setup(service, Stubber(object()), FakeTime(), front, keys, signer)

    first_status, first = s.request()
    assert (first_status, first["code"]) == (503, expected), first

    retry_status, retry = s.request()

    assert retry_status == 201, retry
    assert [row.serial for row in s.rows()] == [retry["serialNumber"]]
    service.close()
