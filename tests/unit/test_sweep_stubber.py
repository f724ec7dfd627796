"""The revocation sweep against ACM PCA answers moto does not give, through botocore's
Stubber (each request checked against the real service model): throttling that outlasts
the retries, RequestInProgressException, "already revoked", a CA that is not ACTIVE. Each
refused revocation stays queued; the others go through in the same run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber

from nodecert.aws import sweep
from nodecert.backends.acmpca.backend import ACMPCABackend
from nodecert.backends.acmpca.parameters import RetryPolicy
from nodecert.core.policy import OwnershipMode, OwnershipPolicy
from nodecert.core.values import CertificateRecord, RevocationReason
from nodecert.issuing.administration import Administration
from nodecert.testing import MemoryStore
from tests.fakes import STUB_CA_ARN, FakeTime

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def pca():
    client = boto3.client(
        "acm-pca",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _admin(client, store, clock):
    backend = ACMPCABackend(
        client,
        ca_arn=STUB_CA_ARN,
        organization="nodecert",
        trust_domain="nodecert.example",
        retry=RetryPolicy(),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda: 0.5,
    )
    return Administration(
        ca=backend,
        ledger=store,
        nodes=store,
        ownership=OwnershipPolicy(OwnershipMode.REGISTRY, store),
        outbox=store,
        audit=store,
        clock=lambda: NOW,
    )


def _queue(store, serials):
    for serial in serials:
        store.rows[serial] = CertificateRecord(
            serial=serial,
            user_id="alice",
            node_id="n1",
            key_type="ec-p256",
            not_before=NOW - timedelta(days=1),
            not_after=NOW + timedelta(days=6),
            fingerprint_sha256="00" * 32,
            request_id=f"r-{serial}",
            created_at=NOW - timedelta(days=1),
            issuer=STUB_CA_ARN,
        )
    store.revoke_and_queue(serials, reason=RevocationReason.KEY_COMPROMISE, at=NOW)


def _revoke(stubber, serial, code=None):
    expected = {
        "CertificateAuthorityArn": STUB_CA_ARN,
        "CertificateSerial": serial,
        "RevocationReason": "KEY_COMPROMISE",
    }
    if code is None:
        stubber.add_response("revoke_certificate", {}, expected)
    else:
        stubber.add_client_error("revoke_certificate", code, http_status_code=400)


def test_each_pca_answer_is_handled_and_none_stops_the_others(pca):
    client, stubber = pca
    store, clock = MemoryStore(), FakeTime()
    _queue(store, ["0a", "0b", "0c", "0d", "0e"])
    for _ in range(RetryPolicy().max_attempts):  # 0a: throttled past the retries.
        _revoke(stubber, "0a", "ThrottlingException")
    _revoke(stubber, "0b", "RequestAlreadyProcessedException")  # Revoked before: done.
    _revoke(stubber, "0c", "InvalidStateException")  # Its CA is DISABLED: refused.
    _revoke(stubber, "0d", "RequestInProgressException")  # Being revoked: done.
    _revoke(stubber, "0e")

    result = sweep.drain(_admin(client, store, clock))

    assert result == {"pending": 2, "batches": 2, "failed": 2, "stopped": "no-progress"}
    assert set(store.queue) == {"0a", "0c"}


def test_the_next_run_sends_what_the_ca_refused_before(pca):
    client, stubber = pca
    store, clock = MemoryStore(), FakeTime()
    _queue(store, ["0a", "0b"])
    _revoke(stubber, "0a", "InvalidStateException")
    _revoke(stubber, "0b")
    admin = _admin(client, store, clock)
    assert sweep.drain(admin)["pending"] == 1
    stubber.add_response(
        "revoke_certificate",
        {},
        {
            "CertificateAuthorityArn": STUB_CA_ARN,
            "CertificateSerial": "0a",
            "RevocationReason": ANY,
        },
    )

    assert sweep.drain(admin) == {"pending": 0, "batches": 1, "failed": 0, "stopped": "empty"}
