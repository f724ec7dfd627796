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

Validity on a short-lived-mode CA is cut to seven days exactly (:func:`pca_validity`);
template ARNs are moved into the CA's partition (GovCloud, China); ``GetCertificate`` is
polled on an adaptive schedule that keeps an account at its IssueCertificate quota under
its GetCertificate quota (:mod:`nodecert.backends.acmpca.polling`).

Rotation (docs/aws.md, "Rotating the issuing CA"): the CAs of ``retiring_ca_arns`` issued
earlier and are trusted until their certificates expire; those of ``retired_ca_arns`` (an
emergency) are refused at once except as the proof of a renewal. :meth:`ACMPCABackend.issuer_set`
gives both to the access decision, the authorizer and ``GET /v1/ca/issuers``, from which
renewal agents learn that their issuer is leaving and renew early, exactly as after a local
CA's ``nodecert ca rotate``. Revocation goes to the CA the ledger recorded as the issuer.
The CAs themselves, their chains and signing algorithms are
:class:`~nodecert.backends.acmpca.authorities.Authorities`.

Retries: ``ThrottlingException``, 5xx and connection errors are retried a few times with
full jitter; everything else is translated at once. Build the client with
``nodecert.support.awsclients.make_client("acm-pca", region=..., max_attempts=1)`` so that
botocore does not retry underneath (its retries would not know our deadline).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.backends.acmpca.authorities import Authorities
from nodecert.backends.acmpca.calls import (
    Pacing,
    PCAError,
    call_with_retries,
    operation_deadline,
    poll_certificate,
)
from nodecert.backends.acmpca.parameters import (
    BACKDATE_ALLOWANCE,
    DEFAULT_TEMPLATE_ARN,
    NODE_TEMPLATE_ARN,
    REASONS,
    SHORT_LIVED_MAX,
    RetryPolicy,
    api_passthrough,
    api_passthrough_template,
    idempotency_token,
    load_all,
    partition_of,
    pca_serial,
    pca_validity,
    translate,
)
from nodecert.backends.acmpca.polling import PollSchedule
from nodecert.core.errors import BackendUnavailableError
from nodecert.core.values import (
    IssuerSet,
    Profile,
    RevocationReason,
    SignedCertificate,
    SigningRequest,
)

if TYPE_CHECKING:
    from mypy_boto3_acm_pca import ACMPCAClient
    from mypy_boto3_acm_pca.literals import RevocationReasonType

__all__ = [
    "DEFAULT_TEMPLATE_ARN",
    "NODE_TEMPLATE_ARN",
    "SHORT_LIVED_MAX",
    "ACMPCABackend",
    "RetryPolicy",
    "api_passthrough_template",
    "idempotency_token",
    "partition_of",
    "pca_serial",
    "pca_validity",
]

_DEFAULT_RETRY = RetryPolicy()


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
        template_arn: The client-certificate template; its ``_APIPassthrough`` variant, in
            the CA's partition, is what is used (see :func:`api_passthrough_template`).
        node_template_arn: The template for the ``node`` (server and client) profile.
        retiring_ca_arns: CAs that issued earlier (a planned rotation): their certificates
            are trusted until they expire, and renewal agents renew them early.
        retired_ca_arns: CAs retired at once (an emergency): their certificates are
            refused, except as the proof of a renewal that the ledger knows.
        retry: Deadlines, retries and polling.
        sleep: Waits; injected so tests do not sleep.
        monotonic: A monotonic clock in seconds; injected with ``sleep``.
        jitter: Returns a float in [0, 1); injected so tests are deterministic.

    Raises:
        ConfigurationError: for a template that is not usable with passthrough, a CA ARN
            that is not an ARN, two CAs in different partitions, or a CA both issuing and
            leaving.
    """

    builds_in_process = False  # A CSR goes to ACM PCA; what comes back is checked.
    never_waits = False  # Every certificate is an API call, and a wait for it.

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
        retiring_ca_arns: Sequence[str] = (),
        retired_ca_arns: Sequence[str] = (),
        retry: RetryPolicy = _DEFAULT_RETRY,
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
        self._pacing = Pacing(retry, monotonic, sleep, jitter)
        self._authorities = Authorities(
            self._clients,
            ca_arn=ca_arn,
            retiring=retiring_ca_arns,
            retired=retired_ca_arns,
            pacing=self._pacing,
        )
        partition = self._authorities.partition
        self._templates = {
            Profile.CLIENT: api_passthrough_template(template_arn, partition=partition),
            Profile.NODE: api_passthrough_template(node_template_arn, partition=partition),
        }
        self._schedule = PollSchedule(
            first=retry.poll_first, floor=retry.poll_min, ceiling=retry.poll_max
        )
        self._monotonic = monotonic

    def ca_for(self, request: SigningRequest) -> str:
        """The ARN of the CA that will sign ``request`` (cost-aware routing)."""
        lifetime = request.not_after - request.not_before
        if self._short_lived_ca_arn and lifetime <= SHORT_LIVED_MAX + BACKDATE_ALLOWANCE:
            return self._short_lived_ca_arn
        return self._ca_arn

    def issue(self, request: SigningRequest) -> SignedCertificate:
        """Issue ``request`` and wait (within the deadline) until the certificate is ready.

        Raises:
            BackendUnavailableError: PCA is throttling, failing, too slow or mis-configured.
            CSRError: PCA refused the CSR itself.
        """
        deadline = operation_deadline(self._pacing)
        arn = self.ca_for(request)
        client = self._clients[arn]
        try:
            signing_algorithm = self._authorities.signing_algorithm(arn, deadline)
        except PCAError as exc:
            raise translate(exc.code, "IssueCertificate", nothing_issued=True) from exc.__cause__
        except BackendUnavailableError as exc:
            # Nothing was sent to be signed yet: a retry may safely ask again.
            raise BackendUnavailableError(
                exc.detail, retry_after=exc.retry_after, nothing_issued=True
            ) from exc
        passthrough = api_passthrough(
            request, organization=self._organization, trust_domain=self._trust_domain
        )
        if request.csr is None:
            raise TypeError("ACMPCABackend.issue: ACM PCA signs CSRs; the request has none")
        csr_pem = request.csr.public_bytes(serialization.Encoding.PEM)
        not_before, not_after = pca_validity(request, short_lived=arn == self._short_lived_ca_arn)
        sent = self._monotonic()
        try:
            # Its errors say themselves whether PCA may have accepted the request.
            issued = call_with_retries(
                lambda: client.issue_certificate(
                    CertificateAuthorityArn=arn,
                    Csr=csr_pem,
                    SigningAlgorithm=signing_algorithm,
                    TemplateArn=self._templates[request.profile],
                    Validity={"Type": "ABSOLUTE", "Value": not_after},
                    ValidityNotBefore={"Type": "ABSOLUTE", "Value": not_before},
                    ApiPassthrough=passthrough,
                    IdempotencyToken=idempotency_token(request, arn),
                ),
                self._pacing,
                deadline=deadline,
            )
        except PCAError as exc:
            raise translate(
                exc.code, "IssueCertificate", nothing_issued=exc.refused
            ) from exc.__cause__
        round_trip = self._monotonic() - sent
        try:
            # Accepted: whatever fails from here on, the certificate may exist (and be billed).
            response = self._poll(client, arn, issued["CertificateArn"], deadline, round_trip)
        except PCAError as exc:
            raise translate(exc.code, "IssueCertificate") from exc.__cause__
        try:
            certificate = x509.load_pem_x509_certificate(response["Certificate"].encode())
            chain_pem = str(response.get("CertificateChain") or "")
            chain = tuple(load_all(chain_pem))
        except (KeyError, ValueError) as exc:
            raise BackendUnavailableError("ca: ACM PCA returned an unreadable certificate") from exc
        if not chain:
            try:
                chain = self._authorities.chain_of(arn)
            except BackendUnavailableError as exc:
                # PCA has issued (and billed) the certificate: whatever the chain's failure
                # says, something was issued, so a retry must not be free to issue again.
                raise BackendUnavailableError(
                    exc.detail, retry_after=exc.retry_after, nothing_issued=False
                ) from exc
        return SignedCertificate(certificate=certificate, chain=chain, issuer=arn)

    def chain(self) -> Sequence[x509.Certificate]:
        """The CA certificates (cached): the issuing CAs, the retiring ones, the CAs above
        them, the roots last (``GET /v1/ca``).

        With one CA it is that CA's chain, issuing CA first, up to the root. With a
        short-lived CA too, or retiring CAs, their certificates are there as well, so that
        a trust store built from it accepts certificates of each.

        Raises:
            BackendUnavailableError: PCA cannot answer now, or the CA is not ACTIVE.
        """
        return self._authorities.served_chain()

    def issuer_set(self) -> IssuerSet:
        """The issuing, retiring and retired CAs (``IssuerSource``); built once, then kept.

        The access decision and the authorizer trust the certificates of the first two and
        refuse those of the retired CAs except for renewal; ``GET /v1/ca/issuers`` tells
        renewal agents which CAs are leaving. A retired CA whose chain PCA no longer gives
        (deleted) leaves its certificates without any chain: they are refused, and cannot
        renew either.

        Raises:
            BackendUnavailableError: PCA cannot answer now (nothing is kept: the next call
                asks again).
        """
        return self._authorities.issuer_set()

    def revoke(
        self, certificate_serial: int, reason: RevocationReason, *, issuer: str | None = None
    ) -> None:
        """Revoke a certificate at PCA; already revoked is not an error.

        The ledger row names the CA that issued it (``issuer``, its ARN), and that CA is
        asked, even one no longer configured (after a rotation). Rows recorded before the
        issuer was kept have none: with two CAs, the general-purpose one is asked first
        and, when it does not know the serial (``ResourceNotFoundException`` or
        ``InvalidRequestException``), the short-lived one.

        Raises:
            BackendUnavailableError: PCA cannot answer now, or no CA knows the serial.
        """
        deadline = operation_deadline(self._pacing)
        serial = pca_serial(certificate_serial)
        cas = self._authorities
        arns = [issuer] if issuer is not None else [*cas.issuing, *cas.retiring, *cas.retired]
        for index, arn in enumerate(arns):
            try:
                self._revoke_at(arn, serial, REASONS[reason], deadline)
                return
            except PCAError as exc:
                if exc.code in ("RequestAlreadyProcessedException", "RequestInProgressException"):
                    return
                unknown = exc.code in ("ResourceNotFoundException", "InvalidRequestException")
                if unknown and index + 1 < len(arns):
                    continue
                raise translate(exc.code, "RevokeCertificate") from exc.__cause__

    def check(self) -> None:
        """Describe every configured CA once, for a start-up check.

        A retiring CA must still give its chain (it is trusted); a retired one need not.

        Raises:
            ConfigurationError: a CA is unknown, not ACTIVE, not accessible or uses a key
                algorithm without a known signing algorithm; or a retiring CA has no chain.
        """
        self._authorities.check()

    def _revoke_at(
        self, arn: str, serial: str, reason: RevocationReasonType, deadline: float
    ) -> None:
        # A CA no longer configured (rotated out) is asked through the general client: in
        # another region, PCA refuses and the revocation is a 503 (the ledger row stands).
        client = self._authorities.client_for(arn)
        call_with_retries(
            lambda: client.revoke_certificate(
                CertificateAuthorityArn=arn, CertificateSerial=serial, RevocationReason=reason
            ),
            self._pacing,
            deadline=deadline,
        )

    def _poll(
        self,
        client: ACMPCAClient,
        arn: str,
        certificate_arn: str,
        deadline: float,
        round_trip: float,
    ) -> dict[str, Any]:
        """``GetCertificate`` until ready, on the adaptive schedule, before ``deadline``."""
        return poll_certificate(
            lambda: dict(
                client.get_certificate(CertificateAuthorityArn=arn, CertificateArn=certificate_arn)
            ),
            self._pacing,
            schedule=self._schedule,
            deadline=deadline,
            round_trip=round_trip,
        )
