"""ACMPCABackend against botocore's Stubber: request shapes and the error paths moto lacks.

The Stubber validates every request against the real ACM PCA service model, so these
tests also pin the wire shape (types, enums, required members). Time never passes here:
``sleep`` records the waits and advances a fake monotonic clock.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nodecert.backends.acmpca.backend import (
    ACMPCABackend,
    RetryPolicy,
    api_passthrough_template,
    idempotency_token,
    pca_serial,
    pca_validity,
)
from nodecert.backends.acmpca.polling import PollSchedule
from nodecert.backends.local.ca import LocalCA
from nodecert.core.errors import BackendUnavailableError, ConfigurationError, CSRError
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, build_csr, generate_private_key
from nodecert.core.values import Profile, RevocationReason, SigningRequest
from tests.fakes import FakeTime
from tests.fakes import describe_ca as describe

CA_PREFIX = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/"
GENERAL = CA_PREFIX + "11111111-1111-1111-1111-111111111111"
SHORT = CA_PREFIX + "22222222-2222-2222-2222-222222222222"
CLIENT_TEMPLATE = "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate_APIPassthrough/V1"
NODE_TEMPLATE = "arn:aws:acm-pca:::template/EndEntityCertificate_APIPassthrough/V1"
TRUST_DOMAIN = "example.test"
ORG = "Example"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ALICE = Identity(user_id="alice", node_id="node-1")


ISSUE_ROUND_TRIP = 0.15


@pytest.fixture
def client(clock):
    client = boto3.client(
        "acm-pca",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )

    # Every IssueCertificate takes 150 ms of the fake clock: the unmeasured first poll
    # waits twice that, 0.3 s (RetryPolicy.poll_first, its cap).
    def takes_time(**_: object) -> None:
        clock.now += ISSUE_ROUND_TRIP

    client.meta.events.register("before-parameter-build.acm-pca.IssueCertificate", takes_time)
    return client


@pytest.fixture
def stub(client):
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def clock():
    return FakeTime()


@pytest.fixture(scope="module")
def local_ca():
    return LocalCA.generate(organization=ORG, trust_domain=TRUST_DOMAIN)


@pytest.fixture(scope="module")
def key():
    return generate_private_key(KeyType.EC_P256)


def make_backend(client, clock, **kwargs):
    kwargs.setdefault("retry", RetryPolicy())
    return ACMPCABackend(
        client,
        ca_arn=GENERAL,
        organization=ORG,
        trust_domain=TRUST_DOMAIN,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda: 0.5,
        **kwargs,
    )


def make_request(key, *, identity=ALICE, csr_identity=None, days=7, request_id="req-1", **kw):
    csr = build_csr(key, csr_identity or identity, organization=ORG, trust_domain=TRUST_DOMAIN)
    return SigningRequest(
        csr=csr,
        identity=identity,
        not_before=NOW - timedelta(minutes=1),
        not_after=NOW + timedelta(days=days),
        request_id=request_id,
        **kw,
    )


def issued(stub, arn=GENERAL, expected=None):
    stub.add_response(
        "issue_certificate",
        {"CertificateArn": f"{arn}/certificate/abc"},
        expected or {k: ANY for k in ISSUE_KEYS} | {"CertificateAuthorityArn": arn},
    )


ISSUE_KEYS = (
    "CertificateAuthorityArn",
    "Csr",
    "SigningAlgorithm",
    "TemplateArn",
    "Validity",
    "ValidityNotBefore",
    "ApiPassthrough",
    "IdempotencyToken",
)


def ready(stub, local_ca, request, arn=GENERAL):
    certificate = local_ca.issue(request).certificate
    stub.add_response(
        "get_certificate",
        {
            "Certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "CertificateChain": local_ca.certificate.public_bytes(
                serialization.Encoding.PEM
            ).decode(),
        },
        {"CertificateAuthorityArn": arn, "CertificateArn": f"{arn}/certificate/abc"},
    )
    return certificate


def error(stub, method, code, status=400):
    stub.add_client_error(method, service_error_code=code, http_status_code=status)


# Request shape


@pytest.mark.parametrize(
    ("key_algorithm", "signing_algorithm"),
    [
        ("RSA_2048", "SHA256WITHRSA"),
        ("RSA_4096", "SHA256WITHRSA"),
        ("EC_prime256v1", "SHA256WITHECDSA"),
        ("EC_secp384r1", "SHA384WITHECDSA"),
    ],
)
def test_issue_sends_the_identity_validity_template_and_matching_algorithm(
    client, stub, clock, local_ca, key, key_algorithm, signing_algorithm
):
    request = make_request(key)
    describe(stub, key_algorithm=key_algorithm)
    issued(
        stub,
        expected={
            "CertificateAuthorityArn": GENERAL,
            "Csr": request.csr.public_bytes(serialization.Encoding.PEM),
            "SigningAlgorithm": signing_algorithm,
            "TemplateArn": CLIENT_TEMPLATE,
            "Validity": {"Type": "ABSOLUTE", "Value": int(request.not_after.timestamp())},
            "ValidityNotBefore": {
                "Type": "ABSOLUTE",
                "Value": int(request.not_before.timestamp()),
            },
            "ApiPassthrough": {
                "Subject": {
                    "Organization": ORG,
                    "OrganizationalUnit": "node-1",
                    "CommonName": "alice",
                },
                "Extensions": {
                    "SubjectAlternativeNames": [
                        {
                            "UniformResourceIdentifier": "spiffe://example.test/user/alice/node/node-1"
                        }
                    ]
                },
            },
            "IdempotencyToken": idempotency_token(request, GENERAL),
        },
    )
    certificate = ready(stub, local_ca, request)

    signed = make_backend(client, clock).issue(request)

    assert signed.certificate == certificate
    assert signed.chain == (local_ca.certificate,)
    # One wait (twice the IssueCertificate round trip), one poll.
    assert clock.sleeps == pytest.approx([0.3])


def test_the_ca_description_is_cached_per_arn(client, stub, clock, local_ca, key):
    backend = make_backend(client, clock)
    describe(stub)
    for request_id in ("req-1", "req-2"):
        request = make_request(key, request_id=request_id)
        issued(stub)
        ready(stub, local_ca, request)
        backend.issue(request)


def test_the_identity_comes_from_the_request_even_when_the_csr_names_someone_else(
    client, stub, clock, local_ca, key
):
    request = make_request(key, csr_identity=Identity(user_id="mallory", node_id="node-9"))
    describe(stub)
    issued(
        stub,
        expected={k: ANY for k in ISSUE_KEYS}
        | {
            "TemplateArn": CLIENT_TEMPLATE,
            "ApiPassthrough": {
                "Subject": {
                    "Organization": ORG,
                    "OrganizationalUnit": "node-1",
                    "CommonName": "alice",
                },
                "Extensions": {
                    "SubjectAlternativeNames": [
                        {
                            "UniformResourceIdentifier": "spiffe://example.test/user/alice/node/node-1"
                        }
                    ]
                },
            },
        },
    )
    ready(stub, local_ca, request)
    make_backend(client, clock).issue(request)


def test_the_node_profile_uses_the_server_and_client_template_with_dns_names(
    client, stub, clock, local_ca, key
):
    request = make_request(key, profile=Profile.NODE, dns_names=("node-1.example.test",))
    describe(stub)
    issued(
        stub,
        expected={k: ANY for k in ISSUE_KEYS}
        | {
            "TemplateArn": NODE_TEMPLATE,
            "ApiPassthrough": {
                "Subject": ANY,
                "Extensions": {
                    "SubjectAlternativeNames": [
                        {
                            "UniformResourceIdentifier": "spiffe://example.test/user/alice/node/node-1"
                        },
                        {"DnsName": "node-1.example.test"},
                    ]
                },
            },
        },
    )
    ready(stub, local_ca, request)
    make_backend(client, clock).issue(request)


def test_idempotency_token_is_stable_per_request_and_key_and_fits_pca(key):
    other_key = generate_private_key(KeyType.EC_P256)
    first = idempotency_token(make_request(key, request_id="req-1"), GENERAL)

    assert re.fullmatch(r"[\w-]{1,36}", first)
    assert idempotency_token(make_request(key, request_id="req-1"), GENERAL) == first
    assert idempotency_token(make_request(key, request_id="req-2"), GENERAL) != first
    # A retry with a fresh server-side key must not get the certificate of the old key.
    assert idempotency_token(make_request(other_key, request_id="req-1"), GENERAL) != first


# Cost-aware routing


@pytest.mark.parametrize(("days", "arn"), [(1, SHORT), (7, SHORT), (8, GENERAL), (30, GENERAL)])
def test_validity_up_to_seven_days_goes_to_the_short_lived_ca(
    client, stub, clock, local_ca, key, days, arn
):
    request = make_request(key, days=days)
    describe(stub, arn=arn)
    issued(stub, arn=arn)
    ready(stub, local_ca, request, arn=arn)
    signed = make_backend(client, clock, short_lived_ca_arn=SHORT).issue(request)
    assert signed.issuer == arn  # Recorded in the ledger, for revocation.


def test_without_a_short_lived_ca_everything_goes_to_the_general_ca(client, clock, key):
    backend = make_backend(client, clock)
    assert backend.ca_for(make_request(key, days=1)) == GENERAL


# Retrieval: RequestInProgress polling under one deadline


def test_the_first_poll_waits_the_estimate_then_polls_closer_with_jitter(
    client, stub, clock, local_ca, key
):
    request = make_request(key)
    describe(stub)
    issued(stub)
    for _ in range(3):
        error(stub, "get_certificate", "RequestInProgressException")
    certificate = ready(stub, local_ca, request)

    signed = make_backend(client, clock).issue(request)

    assert signed.certificate == certificate
    # 0.3 s (twice the issue round trip), then from 50 ms doubling with "equal jitter"
    # (0.5 → three quarters of the step, never under 50 ms).
    assert clock.sleeps == pytest.approx([0.3, 0.05, 0.075, 0.15])


def test_the_first_wait_follows_how_long_certificates_took(client, stub, clock, local_ca, key):
    backend = make_backend(client, clock)
    describe(stub)
    # A slow issuance (ready at the third poll, 0.425 s in, so during its last 75 ms wait)
    # is the first measurement: 0.3875 s, the middle of that wait...
    slow = make_request(key, request_id="slow")
    issued(stub)
    error(stub, "get_certificate", "RequestInProgressException")
    error(stub, "get_certificate", "RequestInProgressException")
    ready(stub, local_ca, slow)
    backend.issue(slow)
    assert clock.sleeps == pytest.approx([0.3, 0.05, 0.075])
    # ...so the next first poll waits that long, and succeeds...
    clock.sleeps.clear()
    fast = make_request(key, request_id="fast")
    issued(stub)
    ready(stub, local_ca, fast)
    backend.issue(fast)
    assert clock.sleeps == pytest.approx([0.3875])
    # ...and a certificate ready at the first poll shrinks the estimate by a tenth; one
    # not ready then is polled again soon (an eighth of the estimate, at least 50 ms).
    clock.sleeps.clear()
    again = make_request(key, request_id="again")
    issued(stub)
    error(stub, "get_certificate", "RequestInProgressException")
    ready(stub, local_ca, again)
    backend.issue(again)
    assert clock.sleeps == pytest.approx([0.3875 * 0.9, 0.05])


def test_a_throttled_poll_backs_off_four_fold_and_polling_goes_on(
    client, stub, clock, local_ca, key
):
    request = make_request(key)
    describe(stub)
    issued(stub)
    error(stub, "get_certificate", "ThrottlingException")
    error(stub, "get_certificate", "ThrottlingException")
    ready(stub, local_ca, request)

    make_backend(client, clock, retry=RetryPolicy(poll_first=0.1)).issue(request)

    # Not given up after a few throttled attempts, and never re-polled at once.
    assert clock.sleeps == pytest.approx([0.1, 0.15, 0.3])


def test_polling_is_capped_and_gives_up_at_the_deadline(client, stub, clock, key):
    request = make_request(key)
    backend = make_backend(client, clock, retry=RetryPolicy(deadline=2.9))
    describe(stub)
    issued(stub)
    # 0.15 s issuing + 0.3 + 0.05 + 0.075 + 0.15 + 0.3 + 0.6 + 0.75 = 2.375 s; the next
    # 0.75 s wait (the 1 s cap, jittered) would pass 2.9 s.
    for _ in range(7):
        error(stub, "get_certificate", "RequestInProgressException")

    with pytest.raises(BackendUnavailableError, match="did not finish") as caught:
        backend.issue(request)

    assert caught.value.retry_after == 2
    assert clock.sleeps == pytest.approx([0.3, 0.05, 0.075, 0.15, 0.3, 0.6, 0.75])


def test_a_failed_request_is_reported_without_polling_again(client, stub, clock, key):
    describe(stub)
    issued(stub)
    error(stub, "get_certificate", "RequestFailedException")

    with pytest.raises(BackendUnavailableError, match="RequestFailedException"):
        make_backend(client, clock).issue(make_request(key))
    assert clock.sleeps == pytest.approx([0.3])  # The one wait before the first poll.


# Throttling and 5xx: bounded retries with full jitter


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("InternalFailure", 500), ("ServiceUnavailable", 503)],
)
def test_transient_errors_are_retried_with_jitter(client, stub, clock, local_ca, key, code, status):
    request = make_request(key)
    describe(stub)
    error(stub, "issue_certificate", code, status)
    error(stub, "issue_certificate", code, status)
    issued(stub)
    ready(stub, local_ca, request)

    make_backend(client, clock).issue(request)

    # Full jitter with the injected 0.5: half of 0.1 s, then half of 0.2 s; then the poll.
    assert clock.sleeps == [0.05, 0.1, 0.3]


def test_throttling_that_persists_becomes_backend_unavailable(client, stub, clock, key):
    describe(stub)
    for _ in range(4):
        error(stub, "issue_certificate", "ThrottlingException")

    with pytest.raises(BackendUnavailableError, match="ThrottlingException") as caught:
        make_backend(client, clock).issue(make_request(key))

    assert caught.value.retry_after == 2
    assert len(clock.sleeps) == 3
    assert isinstance(caught.value.__cause__, Exception)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("AccessDeniedException", "IAM role"),
        ("ResourceNotFoundException", "CA ARN"),
        ("InvalidArnException", "malformed"),
    ],
)
def test_configuration_errors_are_clear_and_not_retried(client, stub, clock, key, code, message):
    error(stub, "describe_certificate_authority", code)

    with pytest.raises(BackendUnavailableError, match=message) as caught:
        make_backend(client, clock).issue(make_request(key))

    assert caught.value.retry_after == 60
    assert clock.sleeps == []


def test_an_inactive_ca_is_reported(client, stub, clock, key):
    describe(stub, status="DISABLED")
    with pytest.raises(BackendUnavailableError, match="DISABLED, not ACTIVE"):
        make_backend(client, clock).issue(make_request(key))


def test_check_turns_a_missing_ca_into_a_configuration_error(client, stub, clock):
    error(stub, "describe_certificate_authority", "ResourceNotFoundException")
    with pytest.raises(ConfigurationError, match="not found"):
        make_backend(client, clock).check()


def test_a_refused_csr_is_a_csr_error(client, stub, clock, key):
    describe(stub)
    error(stub, "issue_certificate", "MalformedCSRException")
    with pytest.raises(CSRError):
        make_backend(client, clock).issue(make_request(key))


# Revocation


@pytest.mark.parametrize(
    ("reason", "pca_reason"),
    [
        (RevocationReason.UNSPECIFIED, "UNSPECIFIED"),
        (RevocationReason.KEY_COMPROMISE, "KEY_COMPROMISE"),
        (RevocationReason.AFFILIATION_CHANGED, "AFFILIATION_CHANGED"),
        (RevocationReason.SUPERSEDED, "SUPERSEDED"),
        (RevocationReason.CESSATION_OF_OPERATION, "CESSATION_OF_OPERATION"),
        (RevocationReason.PRIVILEGE_WITHDRAWN, "PRIVILEGE_WITHDRAWN"),
    ],
)
def test_revoke_sends_colon_hex_and_the_pca_reason(client, stub, clock, reason, pca_reason):
    stub.add_response(
        "revoke_certificate",
        {},
        {
            "CertificateAuthorityArn": GENERAL,
            "CertificateSerial": "0a:bc:de:f0",
            "RevocationReason": pca_reason,
        },
    )
    make_backend(client, clock).revoke(0x0ABCDEF0, reason)


def test_revoking_an_already_revoked_certificate_is_not_an_error(client, stub, clock):
    error(stub, "revoke_certificate", "RequestAlreadyProcessedException")
    make_backend(client, clock).revoke(0xABC, RevocationReason.KEY_COMPROMISE)


def test_revoke_asks_the_short_lived_ca_when_the_general_one_does_not_know_the_serial(
    client, stub, clock
):
    error(stub, "revoke_certificate", "ResourceNotFoundException")
    stub.add_response(
        "revoke_certificate",
        {},
        {"CertificateAuthorityArn": SHORT, "CertificateSerial": "0a:bc", "RevocationReason": ANY},
    )
    make_backend(client, clock, short_lived_ca_arn=SHORT).revoke(0xABC, RevocationReason.SUPERSEDED)


@pytest.mark.parametrize("issuer", [SHORT, GENERAL, CA_PREFIX + "33333333-rotated-out"])
def test_revoke_goes_to_the_ca_that_issued_only(client, stub, clock, issuer):
    # One RevokeCertificate, at the recorded issuer, even a CA no longer configured; no
    # guessing, whatever PCA would answer the other CA.
    stub.add_response(
        "revoke_certificate",
        {},
        {"CertificateAuthorityArn": issuer, "CertificateSerial": "0a:bc", "RevocationReason": ANY},
    )
    backend = make_backend(client, clock, short_lived_ca_arn=SHORT)
    backend.revoke(0xABC, RevocationReason.SUPERSEDED, issuer=issuer)
    stub.assert_no_pending_responses()


def test_revoke_at_the_recorded_issuer_reports_its_refusal(client, stub, clock):
    error(stub, "revoke_certificate", "ResourceNotFoundException")
    with pytest.raises(BackendUnavailableError, match="ResourceNotFoundException"):
        make_backend(client, clock, short_lived_ca_arn=SHORT).revoke(
            0xABC, RevocationReason.SUPERSEDED, issuer=SHORT
        )


def test_revoke_of_a_serial_no_ca_knows_is_reported(client, stub, clock):
    error(stub, "revoke_certificate", "ResourceNotFoundException")
    error(stub, "revoke_certificate", "InvalidRequestException")
    with pytest.raises(BackendUnavailableError, match="InvalidRequestException"):
        make_backend(client, clock, short_lived_ca_arn=SHORT).revoke(
            0xABC, RevocationReason.SUPERSEDED
        )


def test_revoke_retries_throttling(client, stub, clock):
    error(stub, "revoke_certificate", "ThrottlingException")
    stub.add_response("revoke_certificate", {}, None)
    make_backend(client, clock).revoke(0xABC, RevocationReason.SUPERSEDED)
    assert clock.sleeps == [0.05]


@pytest.mark.parametrize(
    ("serial", "expected"),
    [(0x1, "01"), (0xABC, "0a:bc"), (0x1234, "12:34"), (2**159, "80" + ":00" * 19)],
)
def test_pca_serial_is_colon_separated_lower_case_octets(serial, expected):
    assert pca_serial(serial) == expected


# The CA chain


def _ca(name, key, issuer_name=None, issuer_key=None):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(issuer_key or key, hashes.SHA256())
    )


def _pem(*certificates):
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


def test_chain_is_issuing_ca_first_up_to_the_root_and_cached(client, stub, clock):
    root_key, middle_key, issuing_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _ca("root", root_key)
    middle = _ca("middle", middle_key, root.subject, root_key)
    issuing = _ca("issuing", issuing_key, middle.subject, middle_key)
    stub.add_response(
        "get_certificate_authority_certificate",
        {"Certificate": _pem(issuing), "CertificateChain": _pem(root, middle)},
        {"CertificateAuthorityArn": GENERAL},
    )
    backend = make_backend(client, clock)

    assert list(backend.chain()) == [issuing, middle, root]
    assert list(backend.chain()) == [issuing, middle, root]


def test_chain_with_two_cas_lists_both_without_duplicates(client, stub, clock):
    root_key, a_key, b_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _ca("root", root_key)
    general = _ca("general", a_key, root.subject, root_key)
    short = _ca("short", b_key, root.subject, root_key)
    for arn, own in ((GENERAL, general), (SHORT, short)):
        stub.add_response(
            "get_certificate_authority_certificate",
            {"Certificate": _pem(own), "CertificateChain": _pem(root)},
            {"CertificateAuthorityArn": arn},
        )

    chain = make_backend(client, clock, short_lived_ca_arn=SHORT).chain()

    # The issuing CAs first, the root last (the CABackend contract).
    assert list(chain) == [general, short, root]


def test_chain_of_an_inactive_ca_is_backend_unavailable(client, stub, clock):
    error(stub, "get_certificate_authority_certificate", "InvalidStateException")
    with pytest.raises(BackendUnavailableError, match="not ACTIVE"):
        make_backend(client, clock).chain()


def test_a_chain_pca_failed_to_give_is_not_asked_for_again_for_a_few_seconds(client, stub, clock):
    error(stub, "get_certificate_authority_certificate", "InvalidStateException")
    backend = make_backend(client, clock)
    with pytest.raises(BackendUnavailableError, match="not ACTIVE"):
        backend.chain()
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca("root", root_key)
    stub.add_response(
        "get_certificate_authority_certificate",
        {"Certificate": _pem(root)},
        {"CertificateAuthorityArn": GENERAL},
    )
    with pytest.raises(BackendUnavailableError, match="not ACTIVE"):
        backend.chain()  # Held: the answer queued above is not asked for.
    clock.sleep(5.0)
    assert list(backend.chain()) == [root]


def test_a_request_out_of_its_own_time_leaves_nothing_held_for_the_next(client, stub, clock):
    # "No time left in this request" is the request's budget, not PCA's answer: the next
    # request, with time, asks PCA at once.
    from nodecert.support.budget import time_budget

    backend = make_backend(client, clock)
    with (
        time_budget(0, monotonic=clock.monotonic),
        pytest.raises(BackendUnavailableError, match="no time left"),
    ):
        backend.chain()
    root = _ca("root", ec.generate_private_key(ec.SECP256R1()))
    stub.add_response(
        "get_certificate_authority_certificate",
        {"Certificate": _pem(root)},
        {"CertificateAuthorityArn": GENERAL},
    )
    assert list(backend.chain()) == [root]


def test_a_certificate_issued_without_its_chain_is_never_reported_as_nothing_issued(
    client, stub, clock, local_ca, key
):
    # PCA issued (and billed) the certificate; its answer had no chain, and the CA's chain
    # cannot be had now (held from an earlier failure that asked for nothing): the error
    # must not let the Idempotency-Key go, or a retry would issue a second certificate.
    error(stub, "get_certificate_authority_certificate", "InvalidStateException")
    backend = make_backend(client, clock)
    with pytest.raises(BackendUnavailableError):
        backend.chain()
    request = make_request(key)
    describe(stub)
    issued(stub)
    certificate = local_ca.issue(request).certificate
    stub.add_response(
        "get_certificate",
        {"Certificate": certificate.public_bytes(serialization.Encoding.PEM).decode()},
        {"CertificateAuthorityArn": GENERAL, "CertificateArn": f"{GENERAL}/certificate/abc"},
    )
    with pytest.raises(BackendUnavailableError) as refused:
        backend.issue(request)
    assert refused.value.nothing_issued is False


# Templates


@pytest.mark.parametrize(
    ("configured", "used"),
    [
        (
            "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate/V1",
            "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate_APIPassthrough/V1",
        ),
        (CLIENT_TEMPLATE, CLIENT_TEMPLATE),
        (NODE_TEMPLATE, NODE_TEMPLATE),
    ],
)
def test_the_api_passthrough_variant_of_the_template_is_used(configured, used):
    assert api_passthrough_template(configured) == used


@pytest.mark.parametrize(
    "configured",
    [
        "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate_CSRPassthrough/V1",
        "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate_APICSRPassthrough/V1",
        "not-an-arn",
    ],
)
def test_templates_that_copy_the_csr_are_refused(configured):
    with pytest.raises(ConfigurationError, match="TEMPLATE_ARN"):
        api_passthrough_template(configured)


# Short-lived mode: NotAfter - NotBefore <= 7 days exactly, backdating included


@pytest.mark.parametrize("days", [1, 7])
def test_a_short_lived_ca_is_asked_for_at_most_seven_days_from_not_before(
    client, stub, clock, local_ca, key, days
):
    request = make_request(key, days=days)  # Backdated a minute, like the authority does.
    not_before = int(request.not_before.timestamp())
    not_after = min(int(request.not_after.timestamp()), not_before + 7 * 86400)
    describe(stub, arn=SHORT)
    issued(
        stub,
        arn=SHORT,
        expected={k: ANY for k in ISSUE_KEYS}
        | {
            "CertificateAuthorityArn": SHORT,
            "ValidityNotBefore": {"Type": "ABSOLUTE", "Value": not_before},
            "Validity": {"Type": "ABSOLUTE", "Value": not_after},
        },
    )
    ready(stub, local_ca, request, arn=SHORT)

    make_backend(client, clock, short_lived_ca_arn=SHORT).issue(request)

    assert not_after - not_before <= 7 * 86400
    if days == 7:  # The default: cut by exactly the backdating, to 7 days to the second.
        assert not_after - not_before == 7 * 86400


def test_sub_second_times_never_add_up_to_more_than_seven_days(key):
    request = make_request(key)
    request = SigningRequest(
        csr=request.csr,
        identity=ALICE,
        not_before=NOW + timedelta(microseconds=999_999),
        not_after=NOW + timedelta(days=7, microseconds=999_999),
        request_id="req",
    )
    not_before, not_after = pca_validity(request, short_lived=True)
    assert not_after - not_before == 7 * 86400
    # A general-purpose CA gets what was asked for (rounded down to seconds).
    assert pca_validity(request, short_lived=False) == (not_before, not_after)


def test_a_general_purpose_ca_keeps_the_requested_validity(client, stub, clock, local_ca, key):
    request = make_request(key, days=30)
    describe(stub)
    issued(
        stub,
        expected={k: ANY for k in ISSUE_KEYS}
        | {
            "CertificateAuthorityArn": GENERAL,
            "Validity": {"Type": "ABSOLUTE", "Value": int(request.not_after.timestamp())},
        },
    )
    ready(stub, local_ca, request)
    make_backend(client, clock, short_lived_ca_arn=SHORT).issue(request)


# Partitions: template ARNs follow the CA's


@pytest.mark.parametrize("partition", ["aws", "aws-us-gov", "aws-cn"])
def test_templates_are_in_the_partition_of_the_ca(client, stub, clock, local_ca, key, partition):
    ca_arn = f"arn:{partition}:acm-pca:us-gov-west-1:111122223333:certificate-authority/1"
    request = make_request(key)
    describe(stub, arn=ca_arn)
    issued(
        stub,
        arn=ca_arn,
        expected={k: ANY for k in ISSUE_KEYS}
        | {
            "CertificateAuthorityArn": ca_arn,
            "TemplateArn": f"arn:{partition}:acm-pca:::template/"
            "EndEntityClientAuthCertificate_APIPassthrough/V1",
        },
    )
    ready(stub, local_ca, request, arn=ca_arn)
    backend = ACMPCABackend(
        client,
        ca_arn=ca_arn,
        organization=ORG,
        trust_domain=TRUST_DOMAIN,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        # The configured default is spelled in the aws partition: it is moved, not refused.
        template_arn="arn:aws:acm-pca:::template/EndEntityClientAuthCertificate/V1",
    )
    backend.issue(request)


@pytest.mark.parametrize(
    ("ca_arn", "short", "message"),
    [
        ("not-an-arn", None, "not an ARN"),
        ("arn:aws-mars:acm-pca:x:1:certificate-authority/1", None, "known partition"),
        (GENERAL, "arn:aws-cn:acm-pca:cn-north-1:1:certificate-authority/2", "partition"),
    ],
)
def test_ca_arns_of_unknown_or_mixed_partitions_are_refused(client, ca_arn, short, message):
    with pytest.raises(ConfigurationError, match=message):
        ACMPCABackend(
            client,
            ca_arn=ca_arn,
            short_lived_ca_arn=short,
            organization=ORG,
            trust_domain=TRUST_DOMAIN,
        )


@pytest.mark.parametrize(("round_trip", "first"), [(0.0, 0.05), (0.01, 0.05), (0.1, 0.2), (2, 0.3)])
def test_before_any_measurement_the_first_wait_is_twice_the_issue_round_trip(round_trip, first):
    assert PollSchedule(first=0.3).first_wait(round_trip) == pytest.approx(first)


# The GetCertificate quota at the IssueCertificate quota


@pytest.mark.parametrize("ready_after", [0.08, 0.3, 0.7, 1.5, 3.0])
def test_polls_per_certificate_stay_under_the_get_certificate_quota(ready_after):
    """At 25 issuances/s an account can afford 75/25 = 3 polls per certificate.

    PCA is modelled as ready ``ready_after`` seconds after IssueCertificate (±20%,
    deterministic); the schedule must average fewer than three polls once it has
    learned, for fast and slow CAs alike, and fewer than the 50 ms doubling it replaces.
    """
    schedule = PollSchedule()
    rng = random.Random(7)
    counts, late = [], []
    for _ in range(200):
        latency = ready_after * (0.8 + 0.4 * rng.random())
        elapsed, wait, polls = 0.0, schedule.first_wait(0.1), 0
        while True:
            elapsed += wait
            polls += 1
            if elapsed >= latency:
                break
            wait = schedule.next_wait(polls, rng.random())
        schedule.observe(elapsed, polls, last_wait=wait)
        counts.append(polls)
        late.append((elapsed - latency) / ready_after)
    learned = counts[20:]
    assert sum(learned) / len(learned) < 3.0
    # And a certificate is picked up soon after it is ready: on average within a quarter
    # of the CA's own time (or the 50 ms floor).
    picked = late[20:]
    assert sum(picked) / len(picked) < max(0.25, 0.05 / ready_after)
    # What it replaces (50 ms, doubling, capped at 0.5 s) needs more for any CA over ~0.3 s.
    old, waited = 0, 0.0
    for step in (0.05, 0.1, 0.2, 0.4, *(0.5,) * 20):
        old += 1
        if waited >= ready_after:
            break
        waited += step
    assert ready_after < 0.3 or old > 3
