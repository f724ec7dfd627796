"""The CAs an ACM PCA backend knows, and what PCA says about each (asked once, then kept).

The issuing CAs (``NODECERT_ACMPCA_CA_ARN``, ``_SHORT_LIVED_CA_ARN``) and the leaving ones
of a rotation (``NODECERT_ACMPCA_RETIRING_ARNS``, ``_RETIRED_ARNS``; docs/aws.md, "Rotating
the issuing CA") are checked together when the backend is built: one partition, no CA listed
twice. Each issuing CA's signing algorithm (``DescribeCertificateAuthority``, ACTIVE only)
and each CA's chain (``GetCertificateAuthorityCertificate``) are asked for once and kept,
and so is the :class:`~nodecert.core.values.IssuerSet` built from the chains
(:mod:`nodecert.backends.acmpca.rotation`). :class:`~nodecert.backends.acmpca.backend.ACMPCABackend`
issues and revokes with them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography import x509

from nodecert.backends.acmpca.calls import (
    Pacing,
    PCAError,
    call_with_retries,
    operation_deadline,
)
from nodecert.backends.acmpca.parameters import (
    SIGNING_ALGORITHMS,
    load_all,
    ordered_chain,
    partition_of,
    translate,
)
from nodecert.backends.acmpca.rotation import issuer_set_of, served_chain
from nodecert.core.errors import BackendUnavailableError, ConfigurationError, NotFoundError
from nodecert.core.values import IssuerSet

if TYPE_CHECKING:
    from mypy_boto3_acm_pca import ACMPCAClient
    from mypy_boto3_acm_pca.literals import SigningAlgorithmType

__all__ = ["Authorities"]

_log = logging.getLogger("nodecert.backends.acmpca")
# How long a CA chain PCA could not give is answered from that failure, without asking
# again (at most: less when the failure's Retry-After is shorter).
_OUTAGE_HELD_S = 5.0


class Authorities:
    """The issuing, retiring and retired CAs of a backend, their clients, algorithms and chains.

    Args:
        clients: The issuing CAs' clients by ARN, ``ca_arn``'s first.
        ca_arn: The general-purpose CA, whose client a leaving CA is asked through (a
            leaving CA is in its account and region).
        retiring: The ARNs of CAs that issued earlier (a planned rotation).
        retired: The ARNs of CAs retired at once (an emergency).
        pacing: The backend's retries and clocks.

    Raises:
        ConfigurationError: two CAs in different partitions, or a CA listed twice among the
            issuing and leaving ones.
    """

    def __init__(
        self,
        clients: dict[str, ACMPCAClient],
        *,
        ca_arn: str,
        retiring: Sequence[str],
        retired: Sequence[str],
        pacing: Pacing,
    ) -> None:
        self.partition = partition_of(ca_arn)
        for arn in clients:
            if partition_of(arn) != self.partition:
                raise ConfigurationError(
                    "NODECERT_ACMPCA_SHORT_LIVED_CA_ARN: not in the partition of the CA"
                    f" ({self.partition!r})"
                )
        self.issuing = tuple(clients)
        self.retiring = tuple(retiring)
        self.retired = tuple(retired)
        for arn in (*self.retiring, *self.retired):
            if partition_of(arn) != self.partition:
                raise ConfigurationError(
                    f"ACM PCA: the leaving CA {arn} is not in the partition of the CA"
                    f" ({self.partition!r})"
                )
        leaving = set(self.retiring) | set(self.retired)
        if leaving & set(clients) or len(leaving) != len(self.retiring) + len(self.retired):
            raise ConfigurationError(
                "ACM PCA: a CA is listed twice among the issuing, retiring and retired CAs"
            )
        self._clients = clients
        self._ca_arn = ca_arn
        self._pacing = pacing
        self._issuers: IssuerSet | None = None
        self._signing: dict[str, SigningAlgorithmType] = {}
        self._chains: dict[str, tuple[x509.Certificate, ...]] = {}
        # A CA chain PCA could not give: until when (pacing.monotonic) the same answer
        # stands, and that answer's detail and Retry-After (see chain_of).
        self._chain_outages: dict[str, tuple[float, str, int | None]] = {}

    def client_for(self, arn: str) -> ACMPCAClient:
        """The client that reaches ``arn``: its own, or the general CA's for any other."""
        return self._clients.get(arn, self._clients[self._ca_arn])

    def served_chain(self) -> tuple[x509.Certificate, ...]:
        """``GET /v1/ca``: the issuing and retiring CAs and those above them, roots last.

        Raises:
            BackendUnavailableError: PCA cannot answer now, or the CA is not ACTIVE.
        """
        return served_chain([self.chain_of(arn) for arn in (*self.issuing, *self.retiring)])

    def issuer_set(self) -> IssuerSet:
        """The :class:`IssuerSet` of every CA: built once, then kept.

        Raises:
            BackendUnavailableError: PCA cannot answer now (nothing is kept: the next call
                asks again).
        """
        cached = self._issuers
        if cached is not None:
            return cached
        built = issuer_set_of(
            active=[self.chain_of(arn) for arn in self.issuing],
            retiring=[self.chain_of(arn) for arn in self.retiring],
            retired=[self._retired_chain(arn) for arn in self.retired],
        )
        self._issuers = built
        return built

    def check(self) -> None:
        """Describe every issuing CA once, and get every retiring CA's chain (start-up).

        A retiring CA must still give its chain (it is trusted); a retired one need not.

        Raises:
            ConfigurationError: a CA is unknown, not ACTIVE, not accessible or uses a key
                algorithm without a known signing algorithm; or a retiring CA has no chain.
        """
        for arn in self.retiring:
            try:
                self.chain_of(arn)
            except BackendUnavailableError as exc:
                raise ConfigurationError(
                    f"NODECERT_ACMPCA_RETIRING_ARNS: {arn}: {exc.detail}"
                ) from exc
        for arn in self.issuing:
            try:
                self.signing_algorithm(arn, operation_deadline(self._pacing))
            except PCAError as exc:
                detail = translate(exc.code, "DescribeCertificateAuthority").detail
                raise ConfigurationError(f"{arn}: {detail}") from exc.__cause__
            except BackendUnavailableError as exc:
                raise ConfigurationError(f"{arn}: {exc.detail}") from exc

    def signing_algorithm(self, arn: str, deadline: float) -> SigningAlgorithmType:
        """The signing algorithm of the issuing CA ``arn``, from its key algorithm.

        Raises:
            PCAError: PCA refused ``DescribeCertificateAuthority``.
            BackendUnavailableError: PCA cannot answer now, the CA is not ACTIVE, or its key
                algorithm has no known signing algorithm.
        """
        cached = self._signing.get(arn)
        if cached is not None:
            return cached
        client = self._clients[arn]
        authority = call_with_retries(
            lambda: client.describe_certificate_authority(CertificateAuthorityArn=arn),
            self._pacing,
            deadline=deadline,
        )["CertificateAuthority"]
        status = authority.get("Status", "UNKNOWN")
        if status != "ACTIVE":
            raise BackendUnavailableError(
                f"ca: the ACM PCA certificate authority is {status}, not ACTIVE", retry_after=60
            )
        key_algorithm = authority.get("CertificateAuthorityConfiguration", {}).get(
            "KeyAlgorithm", ""
        )
        algorithm = SIGNING_ALGORITHMS.get(key_algorithm)
        if algorithm is None:
            raise BackendUnavailableError(
                f"ca: no signing algorithm known for the CA's key algorithm {key_algorithm!r}",
                retry_after=60,
            )
        self._signing[arn] = algorithm
        return algorithm

    def chain_of(self, arn: str) -> tuple[x509.Certificate, ...]:
        """The chain of ``arn``: that CA first, its root last.

        Raises:
            NotFoundError: ``arn`` is a retired CA that PCA no longer knows.
            BackendUnavailableError: PCA cannot answer now, or gave an unreadable chain.
        """
        cached = self._chains.get(arn)
        if cached is not None:
            return cached
        outage = self._chain_outages.get(arn)
        if outage is not None and self._pacing.monotonic() < outage[0]:
            # GET /v1/ca and /v1/ca/issuers are public: while PCA cannot give the chain,
            # a flood of them must not become a flood of PCA calls, each retried.
            _, detail, retry_after = outage
            raise BackendUnavailableError(detail, retry_after=retry_after, nothing_issued=True)
        try:
            chain = self._fetch_chain(arn)
        except BackendUnavailableError as exc:
            # Only what PCA answered (an error, an unreadable chain: the cause) is kept; a
            # request that ran out of its own time never asked, and says nothing of PCA.
            if exc.__cause__ is not None:
                held = _OUTAGE_HELD_S if exc.retry_after is None else exc.retry_after
                until = self._pacing.monotonic() + min(float(held), _OUTAGE_HELD_S)
                self._chain_outages[arn] = (until, exc.detail, exc.retry_after)
            raise
        self._chain_outages.pop(arn, None)
        self._chains[arn] = chain
        return chain

    def _fetch_chain(self, arn: str) -> tuple[x509.Certificate, ...]:
        client = self.client_for(arn)
        try:
            response = call_with_retries(
                lambda: client.get_certificate_authority_certificate(CertificateAuthorityArn=arn),
                self._pacing,
                deadline=operation_deadline(self._pacing),
            )
        except PCAError as exc:
            if exc.code == "ResourceNotFoundException" and arn in self.retired:
                raise NotFoundError(f"ca: no ACM PCA certificate authority {arn}") from exc
            raise translate(exc.code, "GetCertificateAuthorityCertificate") from exc.__cause__
        try:
            own = x509.load_pem_x509_certificate(response["Certificate"].encode())
            parents = load_all(response.get("CertificateChain") or "")
        except (KeyError, ValueError) as exc:
            raise BackendUnavailableError("ca: ACM PCA returned an unreadable CA chain") from exc
        return ordered_chain(own, parents)

    def _retired_chain(self, arn: str) -> tuple[x509.Certificate, ...]:
        # An emergency's CA may be disabled or deleted already: without its chain its
        # certificates simply chain nowhere (refused, and no renewal), which is safe.
        try:
            return self.chain_of(arn)
        except NotFoundError:
            _log.warning("acm-pca: the retired CA %s is gone: its certificates chain nowhere", arn)
            return ()
