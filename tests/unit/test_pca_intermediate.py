"""``ca sign-intermediate --acmpca-arn`` against botocore's Stubber: what moto cannot show.

moto ignores templates, validity and idempotency tokens, and never throttles or answers
``RequestInProgressException``; the Stubber checks every request against the real ACM PCA
service model and answers what the test says. "PCA's root" is a real root made here, which
signs with the profile of ``SubordinateCACertificate_PathLen0/V1`` (``tests.fakes``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nodecert.backends.acmpca.intermediate import (
    SUBORDINATE_TEMPLATE_ARN,
    sign_intermediate_at_pca,
    subordinate_token,
)
from nodecert.backends.acmpca.parameters import RetryPolicy
from nodecert.backends.local.hierarchy import ca_name, make_root
from nodecert.core.errors import BackendUnavailableError, ConfigurationError, CSRError
from tests.fakes import FakeTime, pca_subordinate, stubbed_pca

ARN = (
    "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/"
    "11111111-1111-1111-1111-111111111111"
)
CERT_ARN = ARN + "/certificate/0123456789abcdef0123456789abcdef"
NOW = datetime.now(UTC)
_ROOT_KEY = ec.generate_private_key(ec.SECP256R1())
_ROOT = make_root(_ROOT_KEY, "Platform", NOW)
_KEY = ec.generate_private_key(ec.SECP256R1())
_CSR = (
    x509.CertificateSigningRequestBuilder()
    .subject_name(ca_name("Example", "issuing CA 2026"))
    .sign(_KEY, hashes.SHA256())
)
CSR_PEM = _CSR.public_bytes(serialization.Encoding.PEM)
CSR_DER = _CSR.public_bytes(serialization.Encoding.DER)


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _describe(stub: Any, **overrides: Any) -> None:
    authority = {
        "Arn": ARN,
        "Type": "ROOT",
        "Status": "ACTIVE",
        "UsageMode": "GENERAL_PURPOSE",
        "CertificateAuthorityConfiguration": {
            "KeyAlgorithm": "EC_prime256v1",
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": {"CommonName": "Platform root CA"},
        },
    }
    authority.update(overrides)
    stub.add_response(
        "describe_certificate_authority",
        {"CertificateAuthority": authority},
        {"CertificateAuthorityArn": ARN},
    )


def _ca_certificate(stub: Any, root: x509.Certificate = _ROOT) -> None:
    stub.add_response(
        "get_certificate_authority_certificate",
        {"Certificate": _pem(root)},
        {"CertificateAuthorityArn": ARN},
    )


def _issue(stub: Any, days: int = 365, algorithm: str = "SHA256WITHECDSA") -> None:
    stub.add_response(
        "issue_certificate",
        {"CertificateArn": CERT_ARN},
        {
            "CertificateAuthorityArn": ARN,
            "Csr": CSR_PEM,
            "SigningAlgorithm": algorithm,
            "TemplateArn": SUBORDINATE_TEMPLATE_ARN,
            "Validity": {"Type": "DAYS", "Value": days},
            "IdempotencyToken": subordinate_token(ARN, CSR_DER, days),
        },
    )


def _certificate(stub: Any, certificate: str) -> None:
    stub.add_response(
        "get_certificate",
        {"Certificate": certificate, "CertificateChain": _pem(_ROOT)},
        {"CertificateAuthorityArn": ARN, "CertificateArn": CERT_ARN},
    )


def _sign(client: Any, clock: FakeTime, days: int = 365) -> tuple[x509.Certificate, ...]:
    return sign_intermediate_at_pca(
        client,
        CSR_PEM,
        ca_arn=ARN,
        days=days,
        now=NOW,
        retry=RetryPolicy(deadline=60.0, poll_first=1.0, poll_max=5.0),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda: 0.5,
    )


@pytest.fixture
def pca() -> Any:
    client, stub = stubbed_pca()
    with stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_a_ca_that_cannot_sign_an_intermediate_is_refused_before_anything_is_issued(
    pca: Any,
) -> None:
    client, stub = pca
    cases: list[tuple[dict[str, Any], str]] = [
        ({"Status": "DISABLED"}, "DISABLED, not ACTIVE"),
        ({"Type": "SUBORDINATE"}, "a SUBORDINATE CA"),
        ({"UsageMode": "SHORT_LIVED_CERTIFICATE"}, "short-lived-mode"),
        (
            {
                "CertificateAuthorityConfiguration": {
                    "KeyAlgorithm": "ML_DSA_65",
                    "SigningAlgorithm": "ML_DSA_65",
                    "Subject": {"CommonName": "pq"},
                }
            },
            "RSA and EC CAs only",
        ),
    ]
    for overrides, message in cases:
        _describe(stub, **overrides)
        with pytest.raises(ConfigurationError, match=message):
            _sign(client, FakeTime())
    # Validity past the CA's own certificate: PCA would refuse it; said here with the bound.
    _describe(stub)
    _ca_certificate(stub)
    with pytest.raises(ConfigurationError, match=r"--days: 4000 days would outlive .* at most"):
        _sign(client, FakeTime(), days=4000)
    # A hostile CSR never reaches PCA (no response is queued for it).
    with pytest.raises(CSRError):
        sign_intermediate_at_pca(client, b"not a csr", ca_arn=ARN, days=30, now=NOW)


@pytest.mark.parametrize("ca", [False, True])
def test_a_certificate_that_is_not_an_issuing_ca_for_the_csr_is_refused(pca: Any, ca: bool) -> None:
    client, stub = pca
    _describe(stub)
    _ca_certificate(stub)
    _issue(stub)
    if ca:
        # The issuing-CA profile, but for another key: not this CSR's.
        other = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(_CSR.subject)
            .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        )
        _certificate(stub, _pem(pca_subordinate(other, _ROOT_KEY, _ROOT)))
        message = "not for this CSR"
    else:
        # No template applied (an end-entity certificate), as moto answers.
        _certificate(stub, _pem(pca_subordinate(_CSR, _ROOT_KEY, _ROOT, ca=False)))
        message = "not an issuing CA"
    with pytest.raises(ConfigurationError, match=message):
        _sign(client, FakeTime())


def test_a_malformed_certificate_or_a_foreign_signature_is_refused(pca: Any) -> None:
    client, stub = pca
    for answer, message in (
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "unreadable"),
        (
            _pem(pca_subordinate(_CSR, ec.generate_private_key(ec.SECP256R1()), _ROOT)),
            "not signed by the CA",
        ),
    ):
        _describe(stub)
        _ca_certificate(stub)
        _issue(stub)
        _certificate(stub, answer)
        with pytest.raises(ConfigurationError, match=message):
            _sign(client, FakeTime())


def test_the_request_shape_throttling_and_request_in_progress(pca: Any) -> None:
    client, stub = pca
    clock = FakeTime()
    # An RSA root: the signing algorithm follows its key (read from DescribeCA).
    rsa_root_key = rsa.generate_private_key(65537, 2048)
    rsa_root = make_root(rsa_root_key, "Platform", NOW)
    rsa_config = {
        "KeyAlgorithm": "RSA_4096",
        "SigningAlgorithm": "SHA512WITHRSA",
        "Subject": {"CommonName": "rsa root"},
    }
    _describe(stub, CertificateAuthorityConfiguration=rsa_config)
    _ca_certificate(stub, rsa_root)
    # Throttled once: retried with the same token (the Stubber checks every parameter).
    stub.add_client_error("issue_certificate", "ThrottlingException", http_status_code=400)
    _issue(stub, days=1095, algorithm="SHA256WITHRSA")
    for _ in range(2):
        stub.add_client_error("get_certificate", "RequestInProgressException", http_status_code=400)
    stub.add_response(
        "get_certificate",
        {"Certificate": _pem(pca_subordinate(_CSR, rsa_root_key, rsa_root))},
        {"CertificateAuthorityArn": ARN, "CertificateArn": CERT_ARN},
    )
    chain = _sign(client, clock, days=1095)
    assert [c.subject for c in chain] == [_CSR.subject, rsa_root.subject]
    assert chain[1] == rsa_root
    # One retry delay, then a wait before each of the three polls.
    assert len(clock.sleeps) == 4


def test_pca_too_slow_says_how_to_get_the_same_certificate() -> None:
    # Not the fixture: the answers the deadline leaves unasked stay queued.
    client, stub = stubbed_pca()
    polls: list[object] = []
    client.meta.events.register(
        "before-parameter-build.acm-pca.GetCertificate", lambda **kw: polls.append(kw)
    )
    clock = FakeTime()
    with stub:
        _describe(stub)
        _ca_certificate(stub)
        _issue(stub)
        for _ in range(100):
            stub.add_client_error(
                "get_certificate", "RequestInProgressException", http_status_code=400
            )
        with pytest.raises(BackendUnavailableError, match="same command again within five"):
            _sign(client, clock)
    # The polls stopped at the 60 s deadline, with waits growing up to 5 s.
    assert sum(clock.sleeps) <= 60
    assert 10 <= len(polls) < 40


def test_the_idempotency_token_follows_the_ca_the_csr_and_the_days() -> None:
    token = subordinate_token(ARN, CSR_DER, 365)
    assert len(token) == 32 and token == subordinate_token(ARN, CSR_DER, 365)
    assert token != subordinate_token(ARN, CSR_DER, 366)
    assert token != subordinate_token(ARN + "x", CSR_DER, 365)
    assert token != subordinate_token(ARN, CSR_DER + b"\x00", 365)


@pytest.mark.parametrize(
    ("operation", "code", "message"),
    [
        ("issue_certificate", "AccessDeniedException", "IssueCertificate: access denied"),
        ("issue_certificate", "ValidationException", "IssueCertificate: the request was refused"),
        ("get_certificate", "RequestFailedException", "GetCertificate failed"),
    ],
)
def test_pca_refusing_is_one_line_naming_the_call_and_the_code(
    pca: Any, operation: str, code: str, message: str
) -> None:
    client, stub = pca
    _describe(stub)
    _ca_certificate(stub)
    if operation == "get_certificate":
        _issue(stub)
    stub.add_client_error(operation, code, "the service's own words", http_status_code=400)
    with pytest.raises(BackendUnavailableError) as caught:
        _sign(client, FakeTime())
    assert message in caught.value.detail and code in caught.value.detail
    assert "\n" not in caught.value.detail and "own words" not in caught.value.detail
    # Refused at IssueCertificate: PCA surely issued nothing; after it, it may have.
    assert caught.value.nothing_issued is (operation == "issue_certificate")
