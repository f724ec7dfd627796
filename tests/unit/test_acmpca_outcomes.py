"""Does a failed ``ACMPCABackend.issue`` know that PCA issued nothing? (botocore's Stubber)

``BackendUnavailableError.nothing_issued`` decides whether an ``Idempotency-Key`` is
released for a retry: true only when PCA surely accepted nothing (never asked, a definite
refusal on every attempt), false when the request may have been accepted (a 5xx on any
attempt, or anything after ``IssueCertificate`` answered). Connection failures, which the
Stubber cannot produce, are in ``tests/integration/test_pca_connection_faults.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.backends.acmpca.backend import ACMPCABackend, RetryPolicy
from nodecert.core.errors import BackendUnavailableError, CSRError
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, build_csr, generate_private_key
from nodecert.core.values import SigningRequest
from tests.fakes import STUB_CA_ARN as CA_ARN
from tests.fakes import FakeTime, describe_ca

ALICE = Identity(user_id="alice", node_id="node-1")


@pytest.fixture
def clock():
    return FakeTime()


@pytest.fixture
def client():
    return boto3.client(
        "acm-pca", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


@pytest.fixture
def stub(client):
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture(scope="module")
def request_():
    key = generate_private_key(KeyType.EC_P256)
    now = datetime(2025, 3, 1, tzinfo=UTC)
    return SigningRequest(
        csr=build_csr(key, ALICE, organization="o", trust_domain="example.test"),
        identity=ALICE,
        not_before=now,
        not_after=now + timedelta(days=7),
        request_id="idem-1",
    )


def backend(client, clock):
    return ACMPCABackend(
        client,
        ca_arn=CA_ARN,
        organization="o",
        trust_domain="example.test",
        retry=RetryPolicy(),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda: 0.5,
    )


def fails(client, clock, request_) -> BackendUnavailableError:
    with pytest.raises(BackendUnavailableError) as caught:
        backend(client, clock).issue(request_)
    return caught.value


def error(stub, method, code, status=400):
    stub.add_client_error(method, service_error_code=code, http_status_code=status)


@pytest.mark.parametrize(
    "code", ["ValidationException", "LimitExceededException", "InvalidArgsException"]
)
def test_a_definite_refusal_of_issue_certificate_issued_nothing(
    client, stub, clock, request_, code
):
    describe_ca(stub)
    error(stub, "issue_certificate", code)
    assert fails(client, clock, request_).nothing_issued


def test_throttled_on_every_attempt_issued_nothing(client, stub, clock, request_):
    describe_ca(stub)
    for _ in range(RetryPolicy().max_attempts):
        error(stub, "issue_certificate", "ThrottlingException")
    assert fails(client, clock, request_).nothing_issued


@pytest.mark.parametrize("failing_attempt", [0, 1, 3])
def test_one_5xx_among_the_attempts_leaves_the_outcome_unknown(
    client, stub, clock, request_, failing_attempt
):
    # A 500 may come after PCA accepted the request; the later refusals are of retries
    # with the same idempotency token, which say nothing about the first.
    describe_ca(stub)
    for attempt in range(RetryPolicy().max_attempts):
        if attempt == failing_attempt:
            error(stub, "issue_certificate", "InternalFailure", 500)
        else:
            error(stub, "issue_certificate", "ThrottlingException")
    assert not fails(client, clock, request_).nothing_issued


def test_a_ca_that_cannot_be_described_was_never_asked_to_sign(client, stub, clock, request_):
    error(stub, "describe_certificate_authority", "AccessDeniedException")
    assert fails(client, clock, request_).nothing_issued


def test_an_inactive_ca_was_never_asked_to_sign(client, stub, clock, request_):
    describe_ca(stub, status="DISABLED")
    assert fails(client, clock, request_).nothing_issued


def test_a_deadline_that_passes_before_sending_issued_nothing(client, stub, clock, request_):
    describe_ca(stub)

    def slow(**_: object) -> None:
        clock.now += RetryPolicy().deadline  # Describing takes all the time there was.

    client.meta.events.register("before-parameter-build.acm-pca.DescribeCertificateAuthority", slow)
    failure = fails(client, clock, request_)
    assert "no time left" in failure.detail
    assert failure.nothing_issued


def test_anything_after_issue_certificate_answered_may_have_issued(client, stub, clock, request_):
    describe_ca(stub)
    stub.add_response("issue_certificate", {"CertificateArn": f"{CA_ARN}/certificate/abc"})
    error(stub, "get_certificate", "RequestFailedException")
    assert not fails(client, clock, request_).nothing_issued


def test_in_progress_until_the_deadline_may_have_issued(client, stub, clock, request_):
    describe_ca(stub)
    stub.add_response("issue_certificate", {"CertificateArn": f"{CA_ARN}/certificate/abc"})
    for _ in range(17):  # Polls until the 10 s deadline (no round trip measured).
        error(stub, "get_certificate", "RequestInProgressException")
    failure = fails(client, clock, request_)
    assert "did not finish" in failure.detail
    assert not failure.nothing_issued


def test_a_refused_csr_is_a_4xx_which_issued_nothing(client, stub, clock, request_):
    describe_ca(stub)
    error(stub, "issue_certificate", "MalformedCSRException")
    with pytest.raises(CSRError):
        backend(client, clock).issue(request_)


ANSWERS = st.sampled_from(
    [
        ("ThrottlingException", 400),
        ("ValidationException", 400),
        ("LimitExceededException", 400),
        ("InternalFailure", 500),
        ("ServiceUnavailable", 503),
        ("ThrottlingException", 503),
    ]
)


@settings(max_examples=40, deadline=None)
@given(answers=st.lists(ANSWERS, min_size=RetryPolicy().max_attempts, max_size=4))
def test_nothing_issued_exactly_when_every_attempt_sent_was_refused(request_, answers):
    # Whatever PCA answers, attempt after attempt: the error says "nothing issued" exactly
    # when every IssueCertificate that went out got a 4xx.
    clock = FakeTime()
    client = boto3.client(
        "acm-pca", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        describe_ca(stub)
        for code, status in answers:
            error(stub, "issue_certificate", code, status)
        with pytest.raises(BackendUnavailableError) as caught:
            backend(client, clock).issue(request_)
        sent = len(answers) - len(stub._queue)  # type: ignore[attr-defined]
    assert caught.value.nothing_issued == all(status < 500 for _, status in answers[:sent])
