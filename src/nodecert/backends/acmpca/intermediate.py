"""An issuing intermediate signed by AWS Private CA: ``ca sign-intermediate --acmpca-arn``.

The root stays in ACM PCA, and the home issues locally from an intermediate PCA signed
with the AWS-managed ``SubordinateCACertificate_PathLen0/V1`` template (BasicConstraints
CA:TRUE, path length 0; KeyUsage keyCertSign, cRLSign, digitalSignature; subject and key
from the CSR: https://docs.aws.amazon.com/privateca/latest/userguide/template-definitions.html).

Everything that can be refused is checked before ``IssueCertificate``, which is billed:
the CSR (as for an offline root), the CA (ACTIVE, a root, general-purpose mode, an RSA
or EC key that this side can verify) and the validity (within the CA's own certificate).
What comes back is checked too: a certificate for the CSR's key and subject, signed by
that CA, with the issuing-CA profile; anything else is refused and nothing is written.

The calls use the backend's retries and ``GetCertificate`` polling
(:mod:`nodecert.backends.acmpca.calls`) under one deadline, longer than a request's: an
operator waits at a terminal, not API Gateway. The ``IdempotencyToken`` is derived from the
CA, the CSR and the validity, so running the same command again within PCA's five-minute
window returns the same certificate instead of a second one.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from nodecert.backends.acmpca.calls import Pacing, PCAError, call_with_retries, poll_certificate
from nodecert.backends.acmpca.parameters import (
    SIGNING_ALGORITHMS,
    RetryPolicy,
    load_all,
    ordered_chain,
    partition_of,
    translate,
)
from nodecert.backends.acmpca.polling import PollSchedule
from nodecert.backends.local.hierarchy import read_intermediate_csr
from nodecert.core.errors import BackendUnavailableError, ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_acm_pca import ACMPCAClient
    from mypy_boto3_acm_pca.literals import SigningAlgorithmType

__all__ = [
    "OPERATOR_RETRY",
    "SUBORDINATE_TEMPLATE_ARN",
    "sign_intermediate_at_pca",
    "subordinate_token",
]

SUBORDINATE_TEMPLATE_ARN = "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1"
# An operator at a terminal can wait a minute; PCA usually signs within seconds.
OPERATOR_RETRY = RetryPolicy(deadline=60.0, poll_first=1.0, poll_max=5.0)
# Key algorithms whose signatures this side verifies (pyca cryptography): not SM2 or ML-DSA.
_VERIFIABLE = ("RSA_", "EC_")


def subordinate_token(ca_arn: str, csr_der: bytes, days: int) -> str:
    """The ``IdempotencyToken`` of a signing: 32 hex digits of the CA, the CSR and the days."""
    parts = [b"sign-intermediate", ca_arn.encode(), csr_der, str(days).encode()]
    return hashlib.sha256(b"\x00".join(hashlib.sha256(p).digest() for p in parts)).hexdigest()[:32]


def sign_intermediate_at_pca(
    client: ACMPCAClient,
    csr_pem: bytes,
    *,
    ca_arn: str,
    days: int,
    now: datetime,
    retry: RetryPolicy = OPERATOR_RETRY,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
) -> tuple[x509.Certificate, ...]:
    """Have the ACM PCA ``ca_arn`` sign ``csr_pem`` as an issuing intermediate.

    Returns:
        The intermediate first, then PCA's chain up to and including its root.

    Raises:
        CSRError: the CSR is unusable (see
            :func:`~nodecert.backends.local.hierarchy.read_intermediate_csr`).
        ConfigurationError: the CA cannot sign it (not ACTIVE, not a root, short-lived
            mode, a key algorithm this side cannot verify, validity past the CA's), or PCA
            returned something that is not an issuing CA for this CSR.
        BackendUnavailableError: PCA refused, throttled or did not finish in time.
    """
    csr = read_intermediate_csr(csr_pem)
    partition = partition_of(ca_arn)
    pacing = Pacing(retry, monotonic, sleep, jitter)
    deadline = monotonic() + retry.deadline

    def call(operation: str, run: Callable[[], Any], *, sent: bool = False) -> Any:
        try:
            return call_with_retries(run, pacing, deadline=deadline)
        except PCAError as exc:
            raise translate(exc.code, operation, nothing_issued=not sent or exc.refused) from exc

    authority = call(
        "DescribeCertificateAuthority",
        lambda: client.describe_certificate_authority(CertificateAuthorityArn=ca_arn),
    )["CertificateAuthority"]
    algorithm = _check_authority(authority, ca_arn)
    answer = call(
        "GetCertificateAuthorityCertificate",
        lambda: client.get_certificate_authority_certificate(CertificateAuthorityArn=ca_arn),
    )
    try:
        own = x509.load_pem_x509_certificate(str(answer["Certificate"]).encode())
        ca_chain = ordered_chain(own, load_all(str(answer.get("CertificateChain") or "")))
    except (KeyError, ValueError) as exc:
        raise BackendUnavailableError("ca: ACM PCA returned an unreadable CA chain") from exc
    if now + timedelta(days=days) > own.not_valid_after_utc:
        room = max(0, (own.not_valid_after_utc - now).days)
        raise ConfigurationError(
            f"--days: {days} days would outlive the PCA's own certificate (until"
            f" {own.not_valid_after_utc:%Y-%m-%d}); at most {room}"
        )
    csr_der = csr.public_bytes(serialization.Encoding.DER)
    template = SUBORDINATE_TEMPLATE_ARN.replace("arn:aws:", f"arn:{partition}:", 1)
    sent_at = monotonic()
    issued = call(
        "IssueCertificate",
        lambda: client.issue_certificate(
            CertificateAuthorityArn=ca_arn,
            Csr=csr_pem,
            SigningAlgorithm=algorithm,
            TemplateArn=template,
            Validity={"Type": "DAYS", "Value": days},
            IdempotencyToken=subordinate_token(ca_arn, csr_der, days),
        ),
        sent=True,
    )
    round_trip = monotonic() - sent_at
    schedule = PollSchedule(first=retry.poll_first, floor=retry.poll_min, ceiling=retry.poll_max)
    try:
        response = poll_certificate(
            lambda: dict(
                client.get_certificate(
                    CertificateAuthorityArn=ca_arn, CertificateArn=issued["CertificateArn"]
                )
            ),
            pacing,
            schedule=schedule,
            deadline=deadline,
            round_trip=round_trip,
        )
    except PCAError as exc:
        raise translate(exc.code, "GetCertificate") from exc
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(
            f"{exc.detail}: run the same command again within five minutes to get the"
            " certificate PCA signed (same CSR, same days: same idempotency token)",
            retry_after=exc.retry_after,
        ) from exc
    try:
        certificate = x509.load_pem_x509_certificate(str(response["Certificate"]).encode())
    except (KeyError, ValueError) as exc:
        raise ConfigurationError("ACM PCA: the certificate it returned is unreadable") from exc
    _check_issued(certificate, csr, own)
    return (certificate, *ca_chain)


def _check_authority(authority: Any, ca_arn: str) -> SigningAlgorithmType:
    status = authority.get("Status", "UNKNOWN")
    if status != "ACTIVE":
        raise ConfigurationError(f"ACM PCA {ca_arn}: the CA is {status}, not ACTIVE")
    if authority.get("Type", "ROOT") != "ROOT":
        # The home keeps one root above its issuing CA (root.crt); a path through a PCA
        # subordinate would need a longer chain than the home keeps.
        raise ConfigurationError(
            f"ACM PCA {ca_arn}: a SUBORDINATE CA; the intermediate must be signed by a root CA"
        )
    if authority.get("UsageMode") == "SHORT_LIVED_CERTIFICATE":
        raise ConfigurationError(
            f"ACM PCA {ca_arn}: a short-lived-mode CA signs for seven days at most;"
            " use a general-purpose root"
        )
    key_algorithm = str(
        authority.get("CertificateAuthorityConfiguration", {}).get("KeyAlgorithm", "")
    )
    algorithm = SIGNING_ALGORITHMS.get(key_algorithm)
    if algorithm is None or not key_algorithm.startswith(_VERIFIABLE):
        raise ConfigurationError(
            f"ACM PCA {ca_arn}: key algorithm {key_algorithm!r}; nodecert verifies RSA and EC"
            " CAs only"
        )
    return algorithm


def _check_issued(
    certificate: x509.Certificate, csr: x509.CertificateSigningRequest, issuer: x509.Certificate
) -> None:
    if certificate.public_key() != csr.public_key() or certificate.subject != csr.subject:
        raise ConfigurationError("ACM PCA: the certificate it returned is not for this CSR")
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigurationError(
            "ACM PCA: the certificate it returned is not signed by the CA"
        ) from exc
    try:
        basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except (x509.ExtensionNotFound, ValueError) as exc:
        raise ConfigurationError(
            "ACM PCA: the certificate it returned is not an issuing CA (no BasicConstraints"
            " or KeyUsage: was the subordinate template applied?)"
        ) from exc
    if not basic.ca or basic.path_length != 0 or not usage.key_cert_sign:
        raise ConfigurationError(
            "ACM PCA: the certificate it returned is not an issuing CA (CA:TRUE, path"
            " length 0, keyCertSign)"
        )
