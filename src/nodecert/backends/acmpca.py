"""The AWS Private CA (ACM PCA) backend.

Issuance is ``IssueCertificate`` then ``GetCertificate`` polled until the certificate is
ready, all under one deadline well inside API Gateway's 29-second limit.

The identity always travels in ``ApiPassthrough`` (Subject and SubjectAlternativeNames),
with the ``_APIPassthrough`` variant of the configured template: AWS's templates copy
Subject and SAN from the CSR otherwise, and a client-supplied CSR may name anyone. The
passthrough is used even for CSRs the service built itself, so that there is one code path,
one template to allow in the IAM policy (``acm-pca:TemplateArn``) and no byte-level
comparison of a CSR's subject with the identity (AWS, template order of operations:
https://docs.aws.amazon.com/privateca/latest/userguide/template-order-of-operations.html).

Retries: ``ThrottlingException``, 5xx and connection errors are retried a few times with
full jitter; everything else is translated at once. Build the client with
``nodecert.aws.make_client("acm-pca", region=..., max_attempts=1)`` so that botocore does
not retry underneath (its retries would not know our deadline).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.aws import botocore_errors, error_code, error_message, is_transient
from nodecert.errors import BackendUnavailableError, ConfigurationError, CSRError, NodecertError
from nodecert.ports import Profile, RevocationReason, SignedCertificate, SigningRequest

if TYPE_CHECKING:
    from mypy_boto3_acm_pca import ACMPCAClient
    from mypy_boto3_acm_pca.literals import RevocationReasonType, SigningAlgorithmType
    from mypy_boto3_acm_pca.type_defs import ApiPassthroughTypeDef, GeneralNameTypeDef

__all__ = [
    "DEFAULT_TEMPLATE_ARN",
    "NODE_TEMPLATE_ARN",
    "SHORT_LIVED_MAX",
    "ACMPCABackend",
    "RetryPolicy",
    "api_passthrough_template",
    "idempotency_token",
    "pca_serial",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_TEMPLATE_ARN = "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate/V1"
NODE_TEMPLATE_ARN = "arn:aws:acm-pca:::template/EndEntityCertificate_APIPassthrough/V1"
# A short-lived-mode CA refuses certificates valid for more than seven days. PCA itself
# backdates NotBefore by 60 minutes when not told otherwise, so the limit is on the
# lifetime from issuance; the hour below allows for our own (smaller) backdating.
SHORT_LIVED_MAX = timedelta(days=7)
_BACKDATE_ALLOWANCE = timedelta(hours=1)

_SIGNING_ALGORITHMS: dict[str, SigningAlgorithmType] = {
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
_REASONS: dict[RevocationReason, RevocationReasonType] = {
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
        poll_first: First wait when the certificate is not ready (the stock botocore
            waiter waits a whole second; PCA usually answers in well under one).
        poll_max: Largest wait between two ``GetCertificate`` polls.
        retry_after: What ``BackendUnavailableError.retry_after`` says on a transient
            failure.
    """

    deadline: float = 10.0
    max_attempts: int = 4
    base_delay: float = 0.1
    max_delay: float = 2.0
    poll_first: float = 0.05
    poll_max: float = 0.5
    retry_after: int = 2


class _PCAError(Exception):
    """A non-transient botocore error with its code, raised from the original error."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def api_passthrough_template(template_arn: str) -> str:
    """The ``_APIPassthrough`` variant of an AWS end-entity template ARN.

    Raises:
        ConfigurationError: for a CSR-passthrough template, which would copy extensions
            from client CSRs into certificates.
    """
    prefix, slash, version = template_arn.rpartition("/")
    if not slash or not prefix.startswith("arn:") or not version:
        raise ConfigurationError(f"NODECERT_ACMPCA_TEMPLATE_ARN: {template_arn!r} is not an ARN")
    if "CSRPassthrough" in prefix:
        raise ConfigurationError(
            f"NODECERT_ACMPCA_TEMPLATE_ARN: {template_arn!r} copies extensions from the CSR;"
            " use a base or _APIPassthrough template"
        )
    if prefix.endswith("_APIPassthrough"):
        return template_arn
    return f"{prefix}_APIPassthrough/{version}"


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
    public_key = request.csr.public_key().public_bytes(
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


class ACMPCABackend:
    """Issues, chains and revokes through AWS Private CA. Implements ``CABackend``.

    Args:
        client: A boto3 ``acm-pca`` client (see the module docstring for its retries).
        ca_arn: The general-purpose CA (or the only one).
        organization: The ``O=`` of issued certificates.
        trust_domain: The SPIFFE trust domain of issued certificates.
        short_lived_ca_arn: A CA in short-lived-certificate mode, for certificates valid
            for at most seven days (cheaper per certificate).
        short_lived_client: Its client, when it is not ``client`` (another region).
        template_arn: The client-certificate template; its ``_APIPassthrough`` variant is
            what is used (see :func:`api_passthrough_template`).
        node_template_arn: The template for the ``node`` (server and client) profile.
        retry: Deadlines, retries and polling.
        sleep: Waits; injected so tests do not sleep.
        monotonic: A monotonic clock in seconds; injected with ``sleep``.
        jitter: Returns a float in [0, 1); injected so tests are deterministic.

    Raises:
        ConfigurationError: for a template that is not usable with passthrough.
    """

    def __init__(
        self,
        client: ACMPCAClient,
        *,
        ca_arn: str,
        organization: str,
        trust_domain: str,
        short_lived_ca_arn: str | None = None,
        short_lived_client: ACMPCAClient | None = None,
        template_arn: str = DEFAULT_TEMPLATE_ARN,
        node_template_arn: str = NODE_TEMPLATE_ARN,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._ca_arn = ca_arn
        self._short_lived_ca_arn = short_lived_ca_arn
        self._clients = {ca_arn: client}
        if short_lived_ca_arn is not None:
            self._clients[short_lived_ca_arn] = short_lived_client or client
        self._organization = organization
        self._trust_domain = trust_domain
        self._templates = {
            Profile.CLIENT: api_passthrough_template(template_arn),
            Profile.NODE: api_passthrough_template(node_template_arn),
        }
        self._retry = retry
        self._sleep = sleep
        self._monotonic = monotonic
        self._jitter = jitter
        self._signing: dict[str, SigningAlgorithmType] = {}
        self._chains: dict[str, tuple[x509.Certificate, ...]] = {}

    def ca_for(self, request: SigningRequest) -> str:
        """The ARN of the CA that will sign ``request`` (cost-aware routing)."""
        lifetime = request.not_after - request.not_before
        if self._short_lived_ca_arn and lifetime <= SHORT_LIVED_MAX + _BACKDATE_ALLOWANCE:
            return self._short_lived_ca_arn
        return self._ca_arn

    def issue(self, request: SigningRequest) -> SignedCertificate:
        """Issue ``request`` and wait (within the deadline) until the certificate is ready.

        Raises:
            BackendUnavailableError: PCA is throttling, failing, too slow or mis-configured.
            CSRError: PCA refused the CSR itself.
        """
        deadline = self._monotonic() + self._retry.deadline
        arn = self.ca_for(request)
        client = self._clients[arn]
        try:
            signing_algorithm = self._signing_algorithm(arn, deadline)
            names: list[GeneralNameTypeDef] = [
                {"UniformResourceIdentifier": request.identity.spiffe_id(self._trust_domain)}
            ]
            if request.profile is Profile.NODE:
                names.extend({"DnsName": name} for name in request.dns_names)
            passthrough: ApiPassthroughTypeDef = {
                "Subject": {
                    "Organization": self._organization,
                    "OrganizationalUnit": request.identity.node_id,
                    "CommonName": request.identity.user_id,
                },
                "Extensions": {"SubjectAlternativeNames": names},
            }
            csr_pem = request.csr.public_bytes(serialization.Encoding.PEM)
            issued = self._call(
                deadline,
                lambda: client.issue_certificate(
                    CertificateAuthorityArn=arn,
                    Csr=csr_pem,
                    SigningAlgorithm=signing_algorithm,
                    TemplateArn=self._templates[request.profile],
                    Validity={"Type": "ABSOLUTE", "Value": int(request.not_after.timestamp())},
                    ValidityNotBefore={
                        "Type": "ABSOLUTE",
                        "Value": int(request.not_before.timestamp()),
                    },
                    ApiPassthrough=passthrough,
                    IdempotencyToken=idempotency_token(request, arn),
                ),
            )
            response = self._poll(client, arn, issued["CertificateArn"], deadline)
        except _PCAError as exc:
            raise _translate(exc.code, "IssueCertificate") from exc.__cause__
        try:
            certificate = x509.load_pem_x509_certificate(response["Certificate"].encode())
            chain = tuple(x509.load_pem_x509_certificates(response["CertificateChain"].encode()))
        except (KeyError, ValueError) as exc:
            raise BackendUnavailableError("ca: ACM PCA returned an unreadable certificate") from exc
        return SignedCertificate(certificate=certificate, chain=chain or self._chain_of(arn))

    def chain(self) -> Sequence[x509.Certificate]:
        """The CA certificates, issuing CA first, up to the root (cached).

        With a short-lived CA too, its chain follows, without the certificates already
        listed, so that a truststore built from it accepts certificates of both.

        Raises:
            BackendUnavailableError: PCA cannot answer now, or the CA is not ACTIVE.
        """
        certificates: list[x509.Certificate] = []
        for arn in self._clients:
            certificates.extend(c for c in self._chain_of(arn) if c not in certificates)
        return tuple(certificates)

    def revoke(self, certificate_serial: int, reason: RevocationReason) -> None:
        """Revoke a certificate at PCA; already revoked is not an error.

        The ledger does not say which CA issued a serial, so with two CAs the
        general-purpose one is asked first and, when it does not know the serial
        (``ResourceNotFoundException`` or ``InvalidRequestException``), the short-lived one.

        Raises:
            BackendUnavailableError: PCA cannot answer now, or no CA knows the serial.
        """
        deadline = self._monotonic() + self._retry.deadline
        serial = pca_serial(certificate_serial)
        arns = list(self._clients)
        for index, arn in enumerate(arns):
            try:
                self._revoke_at(arn, serial, _REASONS[reason], deadline)
                return
            except _PCAError as exc:
                if exc.code in ("RequestAlreadyProcessedException", "RequestInProgressException"):
                    return
                unknown = exc.code in ("ResourceNotFoundException", "InvalidRequestException")
                if unknown and index + 1 < len(arns):
                    continue
                raise _translate(exc.code, "RevokeCertificate") from exc.__cause__

    def check(self) -> None:
        """Describe every configured CA once, for a start-up check.

        Raises:
            ConfigurationError: a CA is unknown, not ACTIVE, not accessible or uses a key
                algorithm without a known signing algorithm.
        """
        for arn in self._clients:
            try:
                self._signing_algorithm(arn, self._monotonic() + self._retry.deadline)
            except _PCAError as exc:
                detail = _translate(exc.code, "DescribeCertificateAuthority").detail
                raise ConfigurationError(f"{arn}: {detail}") from exc.__cause__
            except BackendUnavailableError as exc:
                raise ConfigurationError(f"{arn}: {exc.detail}") from exc

    def _revoke_at(
        self, arn: str, serial: str, reason: RevocationReasonType, deadline: float
    ) -> None:
        client = self._clients[arn]
        self._call(
            deadline,
            lambda: client.revoke_certificate(
                CertificateAuthorityArn=arn, CertificateSerial=serial, RevocationReason=reason
            ),
        )

    def _signing_algorithm(self, arn: str, deadline: float) -> SigningAlgorithmType:
        cached = self._signing.get(arn)
        if cached is not None:
            return cached
        client = self._clients[arn]
        authority = self._call(
            deadline, lambda: client.describe_certificate_authority(CertificateAuthorityArn=arn)
        )["CertificateAuthority"]
        status = authority.get("Status", "UNKNOWN")
        if status != "ACTIVE":
            raise BackendUnavailableError(
                f"ca: the ACM PCA certificate authority is {status}, not ACTIVE", retry_after=60
            )
        key_algorithm = authority.get("CertificateAuthorityConfiguration", {}).get(
            "KeyAlgorithm", ""
        )
        algorithm = _SIGNING_ALGORITHMS.get(key_algorithm)
        if algorithm is None:
            raise BackendUnavailableError(
                f"ca: no signing algorithm known for the CA's key algorithm {key_algorithm!r}",
                retry_after=60,
            )
        self._signing[arn] = algorithm
        return algorithm

    def _chain_of(self, arn: str) -> tuple[x509.Certificate, ...]:
        cached = self._chains.get(arn)
        if cached is not None:
            return cached
        client = self._clients[arn]
        deadline = self._monotonic() + self._retry.deadline
        try:
            response = self._call(
                deadline,
                lambda: client.get_certificate_authority_certificate(CertificateAuthorityArn=arn),
            )
        except _PCAError as exc:
            raise _translate(exc.code, "GetCertificateAuthorityCertificate") from exc.__cause__
        try:
            own = x509.load_pem_x509_certificate(response["Certificate"].encode())
            above = response.get("CertificateChain") or ""
            parents = x509.load_pem_x509_certificates(above.encode()) if above.strip() else []
        except (KeyError, ValueError) as exc:
            raise BackendUnavailableError("ca: ACM PCA returned an unreadable CA chain") from exc
        chain = _ordered(own, parents)
        self._chains[arn] = chain
        return chain

    def _poll(
        self, client: ACMPCAClient, arn: str, certificate_arn: str, deadline: float
    ) -> dict[str, Any]:
        delay = self._retry.poll_first
        while True:
            try:
                response = self._call(
                    deadline,
                    lambda: client.get_certificate(
                        CertificateAuthorityArn=arn, CertificateArn=certificate_arn
                    ),
                )
                return dict(response)
            except _PCAError as exc:
                if exc.code != "RequestInProgressException":
                    raise
                if self._monotonic() + delay > deadline:
                    raise BackendUnavailableError(
                        f"ca: ACM PCA did not finish issuing within {self._retry.deadline:g} s",
                        retry_after=self._retry.retry_after,
                    ) from exc.__cause__
            self._sleep(delay)
            delay = min(delay * 2, self._retry.poll_max)

    def _call(self, deadline: float, call: Callable[[], _T]) -> _T:
        """Run one PCA call, retrying transient errors with full jitter before ``deadline``.

        Raises:
            _PCAError: a non-transient error (from the botocore error).
            BackendUnavailableError: transient errors persisted or the deadline is near.
        """
        attempt = 0
        while True:
            try:
                return call()
            except botocore_errors() as exc:
                code = error_code(exc)
                if not is_transient(exc):
                    _log.warning("acm-pca: %s: %s", code, error_message(exc))
                    raise _PCAError(code) from exc
                attempt += 1
                ceiling = min(self._retry.max_delay, self._retry.base_delay * 2 ** (attempt - 1))
                delay = self._jitter() * ceiling
                if attempt >= self._retry.max_attempts or self._monotonic() + delay > deadline:
                    _log.warning("acm-pca: giving up after %d attempts: %s", attempt, code)
                    raise BackendUnavailableError(
                        f"ca: ACM PCA is unavailable or throttling ({code}); try again later",
                        retry_after=self._retry.retry_after,
                    ) from exc
                self._sleep(delay)


def _translate(code: str, operation: str) -> NodecertError:
    if code == "MalformedCSRException":
        return CSRError("csr: ACM Private CA refused it (MalformedCSRException)")
    why = _CONFIGURATION_CODES.get(code)
    if why is not None:
        return BackendUnavailableError(f"ca: {operation}: {why} ({code})", retry_after=60)
    return BackendUnavailableError(f"ca: {operation} failed ({code})", retry_after=5)


def _ordered(
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
