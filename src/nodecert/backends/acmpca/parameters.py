"""ACM PCA request parameters, the error table and chain ordering: pure functions, no I/O.

Split from :mod:`nodecert.backends.acmpca.backend` (which re-exports the public names) so that
the backend module holds only the calls and their timing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.core.errors import (
    BackendUnavailableError,
    ConfigurationError,
    CSRError,
    NodecertError,
)
from nodecert.core.values import Profile, RevocationReason, SigningRequest

if TYPE_CHECKING:
    from mypy_boto3_acm_pca.literals import RevocationReasonType, SigningAlgorithmType
    from mypy_boto3_acm_pca.type_defs import ApiPassthroughTypeDef, GeneralNameTypeDef

__all__ = [
    "BACKDATE_ALLOWANCE",
    "DEFAULT_TEMPLATE_ARN",
    "NODE_TEMPLATE_ARN",
    "PARTITIONS",
    "REASONS",
    "SHORT_LIVED_MAX",
    "SIGNING_ALGORITHMS",
    "RetryPolicy",
    "api_passthrough",
    "api_passthrough_template",
    "idempotency_token",
    "load_all",
    "ordered_chain",
    "partition_of",
    "pca_serial",
    "pca_validity",
    "translate",
]

# AWS-managed templates have ARNs without region or account, in every partition; these are
# the ``aws`` spellings, moved into the CA's partition by :func:`api_passthrough_template`.
DEFAULT_TEMPLATE_ARN = "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate/V1"
NODE_TEMPLATE_ARN = "arn:aws:acm-pca:::template/EndEntityCertificate_APIPassthrough/V1"
# A short-lived-mode CA refuses certificates valid for more than seven days. AWS does not
# say whether it counts from NotBefore or from the time of issuance, so requests to it are
# cut to NotAfter - NotBefore <= 7 days exactly, which fits either reading (see
# :func:`pca_validity`). Requests up to seven days plus this allowance (our own backdating)
# are routed to it.
SHORT_LIVED_MAX = timedelta(days=7)
BACKDATE_ALLOWANCE = timedelta(hours=1)
PARTITIONS = frozenset(
    {"aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc"}
)

SIGNING_ALGORITHMS: dict[str, SigningAlgorithmType] = {
    "RSA_2048": "SHA256WITHRSA",
    "RSA_3072": "SHA256WITHRSA",
    "RSA_4096": "SHA256WITHRSA",
    "EC_prime256v1": "SHA256WITHECDSA",
    "EC_secp384r1": "SHA384WITHECDSA",
    "EC_secp521r1": "SHA512WITHECDSA",
    "SM2": "SM3WITHSM2",
    "ML_DSA_44": "ML_DSA_44",
    "ML_DSA_65": "ML_DSA_65",
    "ML_DSA_87": "ML_DSA_87",
}
REASONS: dict[RevocationReason, RevocationReasonType] = {
    RevocationReason.UNSPECIFIED: "UNSPECIFIED",
    RevocationReason.KEY_COMPROMISE: "KEY_COMPROMISE",
    RevocationReason.AFFILIATION_CHANGED: "AFFILIATION_CHANGED",
    RevocationReason.SUPERSEDED: "SUPERSEDED",
    RevocationReason.CESSATION_OF_OPERATION: "CESSATION_OF_OPERATION",
    RevocationReason.PRIVILEGE_WITHDRAWN: "PRIVILEGE_WITHDRAWN",
}
# Codes that mean the deployment is wrong, not that AWS is busy: retrying in a second will
# not help, so callers are told to come back much later.
_CONFIGURATION_CODES = {
    "AccessDeniedException": "access denied; check the function's IAM role (acm-pca:*)",
    "UnrecognizedClientException": "the AWS credentials are not valid",
    "ResourceNotFoundException": "the certificate authority was not found; check the CA ARN",
    "InvalidArnException": "the CA ARN is malformed",
    "InvalidStateException": "the certificate authority is not ACTIVE",
    "LimitExceededException": "an ACM PCA quota is exhausted",
    "InvalidArgsException": "the request was refused (validity beyond the CA's, template?)",
    "ValidationException": "the request was refused (validity beyond the CA's, template?)",
    "NoCredentialsError": "no AWS credentials are available",
    "NoRegionError": "no AWS region is configured",
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Timing of one ACM PCA operation (all in seconds).

    Attributes:
        deadline: Total time for one ``issue`` (or ``revoke``, ``chain``), all calls
            included; keep it well under API Gateway's 29 s integration timeout.
        max_attempts: Attempts per call on throttling, 5xx and connection errors.
        base_delay: First retry delay; doubles per attempt, with full jitter.
        max_delay: Largest retry delay.
        poll_first: First wait before ``GetCertificate``, until the backend has measured
            how long certificates take
            (see :class:`~nodecert.backends.acmpca.polling.PollSchedule`).
        poll_min: The shortest first wait the measurement may lead to.
        poll_max: Largest wait between two ``GetCertificate`` polls.
        retry_after: What ``BackendUnavailableError.retry_after`` says on a transient
            failure.
    """

    deadline: float = 10.0
    max_attempts: int = 4
    base_delay: float = 0.1
    max_delay: float = 2.0
    poll_first: float = 0.3
    poll_min: float = 0.05
    poll_max: float = 1.0
    retry_after: int = 2


def api_passthrough(
    request: SigningRequest, *, organization: str, trust_domain: str
) -> ApiPassthroughTypeDef:
    """The ``ApiPassthrough`` of a request: the identity's subject and SAN (plus DNS names
    for the node profile), which the ``_APIPassthrough`` templates put in the certificate.
    """
    names: list[GeneralNameTypeDef] = [
        {"UniformResourceIdentifier": request.identity.spiffe_id(trust_domain)}
    ]
    if request.profile is Profile.NODE:
        names.extend({"DnsName": name} for name in request.dns_names)
        names.extend({"IpAddress": address} for address in request.ip_addresses)
    return {
        "Subject": {
            "Organization": organization,
            "OrganizationalUnit": request.identity.node_id,
            "CommonName": request.identity.user_id,
        },
        "Extensions": {"SubjectAlternativeNames": names},
    }


def load_all(pem: str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; an empty bundle is an empty list."""
    return x509.load_pem_x509_certificates(pem.encode()) if pem.strip() else []


def partition_of(arn: str) -> str:
    """The partition of an ARN (``aws``, ``aws-cn``, ``aws-us-gov``…).

    Raises:
        ConfigurationError: ``arn`` is not an ARN of a known partition.
    """
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn" or parts[1] not in PARTITIONS:
        raise ConfigurationError(f"ACM PCA: {arn[:200]!r} is not an ARN of a known partition")
    return parts[1]


def api_passthrough_template(template_arn: str, *, partition: str = "aws") -> str:
    """The ``_APIPassthrough`` variant of an AWS end-entity template ARN, in ``partition``.

    AWS-managed templates exist in every partition under the same name; only the
    partition of their ARN differs (``arn:aws-us-gov:acm-pca:::template/...``), and it
    must be the CA's: a template ARN of another partition is AccessDenied.

    Raises:
        ConfigurationError: for a CSR-passthrough template, which would copy extensions
            from client CSRs into certificates, or something that is not a template ARN.
    """
    prefix, slash, version = template_arn.rpartition("/")
    fields = prefix.split(":", 5)
    if (
        not slash
        or not version
        or len(fields) != 6
        or fields[0] != "arn"
        or fields[2] != "acm-pca"
        or not fields[5].startswith("template")
    ):
        raise ConfigurationError(
            f"NODECERT_ACMPCA_TEMPLATE_ARN: {template_arn!r} is not an ACM PCA template ARN"
        )
    prefix = ":".join(["arn", partition, *fields[2:]])
    if "CSRPassthrough" in prefix:
        raise ConfigurationError(
            f"NODECERT_ACMPCA_TEMPLATE_ARN: {template_arn!r} copies extensions from the CSR;"
            " use a base or _APIPassthrough template"
        )
    if prefix.endswith("_APIPassthrough"):
        return f"{prefix}/{version}"
    return f"{prefix}_APIPassthrough/{version}"


def pca_validity(request: SigningRequest, *, short_lived: bool) -> tuple[int, int]:
    """``ValidityNotBefore`` and ``Validity`` (both ABSOLUTE, epoch seconds) of a request.

    Both are whole seconds, rounded down. For a short-lived-mode CA, NotAfter is cut so
    that NotAfter - NotBefore is at most seven days exactly: the backdating stays (a
    client whose clock is behind can use the certificate at once) and the certificate
    ends that much earlier.
    """
    not_before = int(request.not_before.timestamp())
    not_after = int(request.not_after.timestamp())
    if short_lived:
        not_after = min(not_after, not_before + int(SHORT_LIVED_MAX.total_seconds()))
    return not_before, not_after


def pca_serial(serial: int) -> str:
    """A serial number as ACM PCA's ``RevokeCertificate`` wants it: ``0a:1b:...``."""
    digits = format(serial, "x")
    digits = digits.zfill(len(digits) + len(digits) % 2)
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def idempotency_token(request: SigningRequest, ca_arn: str) -> str:
    """The ``IdempotencyToken`` of a request: 32 hex digits, stable across retries.

    PCA returns the first certificate for a token seen in the last five minutes. The token
    covers the public key and identity as well as the request id: a retry that carries the
    same request id but a new server-generated key must get a new certificate, not the one
    for the key that was thrown away.
    """
    public_key = request.subject_public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    parts = [
        request.request_id.encode(),
        ca_arn.encode(),
        public_key,
        request.identity.user_id.encode(),
        request.identity.node_id.encode(),
        request.profile.value.encode(),
    ]
    digest = hashlib.sha256(b"\x00".join(hashlib.sha256(p).digest() for p in parts))
    return digest.hexdigest()[:32]


def translate(code: str, operation: str, *, nothing_issued: bool = False) -> NodecertError:
    """The nodecert error for a non-transient ACM PCA error ``code`` of ``operation``.

    ``nothing_issued``: PCA surely issued nothing (see ``BackendUnavailableError``).
    """
    if code == "MalformedCSRException":
        return CSRError("csr: ACM Private CA refused it (MalformedCSRException)")
    why = _CONFIGURATION_CODES.get(code)
    if why is not None:
        return BackendUnavailableError(
            f"ca: {operation}: {why} ({code})", retry_after=60, nothing_issued=nothing_issued
        )
    return BackendUnavailableError(
        f"ca: {operation} failed ({code})", retry_after=5, nothing_issued=nothing_issued
    )


def ordered_chain(
    own: x509.Certificate, parents: Sequence[x509.Certificate]
) -> tuple[x509.Certificate, ...]:
    """``own`` first, then each certificate's issuer, whatever order PCA sent them in."""
    chain, rest = [own], list(parents)
    while rest:
        issuer = next((c for c in rest if c.subject == chain[-1].issuer), None)
        if issuer is None or chain[-1].subject == chain[-1].issuer:
            break
        chain.append(issuer)
        rest.remove(issuer)
    return tuple(chain + rest)
