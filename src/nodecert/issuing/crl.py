"""The CRL of the local CA, built from the ledger.

Node-side checks read the ledger directly and need no CRL; the CRL is for relying parties
that only speak X.509 (nginx ``ssl_crl``, OpenSSL, Java trust managers). It follows the
RFC 5280 profile: version 2, ``nextUpdate``, a CRL number and the AKI; entries carry a
reason code unless it is ``unspecified`` (section 5.3.1 says to omit it then), and
certificates that have expired are dropped (section 3.3 allows it).

The signed CRL is cached: it is rebuilt only when a certificate was revoked since (by any
process: the CA counts revocations in a file beside its key, see :class:`CRLState`) or
when half of its lifetime has passed, so every CRL served has at least half its lifetime
left. CRL numbers come from a counter persisted by the CA, so they strictly increase
(RFC 5280 section 5.2.3) across rebuilds, workers and restarts, even when two CRLs are
built in the same second. Building is linear in the number of revoked certificates.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from nodecert.core.errors import NotFoundError
from nodecert.core.ports import CRLSigner, Ledger
from nodecert.core.values import CertificateQuery, CertificateStatus, RevocationReason
from nodecert.issuing.crl_entries import assemble, entries_der, splice_entries

__all__ = ["CRLPublisher", "CRLState", "IssuerCRLSigners", "PublishedCRL", "RootCRLSource"]

_REASON_FLAGS = {
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


@runtime_checkable
class CRLState(Protocol):
    """Optional ability of a CRL signer: revocation and CRL-number counters it persists.

    The local CA keeps both in files beside its key, shared by every process using it.
    """

    def crl_revision(self) -> int:
        """A number that changes whenever a certificate of this CA is revoked."""
        ...

    def next_crl_number(self, *, at_least: int) -> int:
        """Persist and return a CRL number above every one handed out before."""
        ...


@runtime_checkable
class TBSSigner(Protocol):
    """Optional CRL signer ability: sign DER bytes with the CA key, as ``sign_crl`` does."""

    def sign_tbs(self, tbs: bytes) -> bytes:
        """The signature value over ``tbs`` (the algorithm of the signer's own CRLs)."""
        ...


@runtime_checkable
class RevokedEntries(Protocol):
    """Optional ledger ability: the revoked, unexpired certificates, three columns each."""

    def revoked_entries(
        self, *, now: datetime
    ) -> list[tuple[str, datetime | None, RevocationReason | None]]:
        """(serial, revoked at, reason) of every revoked row with ``not_after`` after ``now``."""
        ...


@runtime_checkable
class IssuerCRLSigners(Protocol):
    """Optional CA ability: a CRL signer per issuing CA, by key id (the local CA's)."""

    def crl_signer(self, issuer: str) -> CRLSigner | None:
        """The signer of the issuing CA with key id ``issuer``, or None if unknown."""
        ...


@runtime_checkable
class RootCRLSource(Protocol):
    """Optional CA ability: the root's own CRL, signed offline (the local CA's
    ``nodecert ca root-crl``), revoking intermediates retired at once."""

    def root_crl(self) -> tuple[str, bytes] | None:
        """The root's key id (hex) and its CRL (DER); None when none was signed."""
        ...


@dataclass(frozen=True, slots=True)
class PublishedCRL:
    """A signed CRL as served: DER bytes, its number, its window and its entity tag."""

    der: bytes
    number: int
    this_update: datetime
    next_update: datetime
    etag: str

    @classmethod
    def of(cls, der: bytes) -> PublishedCRL:
        """A CRL signed elsewhere (the root's, offline), as served.

        Raises:
            ValueError: ``der`` is not a CRL with a ``nextUpdate``.
        """
        crl = x509.load_der_x509_crl(der)
        if crl.next_update_utc is None:
            raise ValueError("a CRL without nextUpdate")
        try:
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        except x509.ExtensionNotFound:
            number = 0
        return cls(der, number, crl.last_update_utc, crl.next_update_utc, _etag(der))


def _etag(der: bytes) -> str:
    return '"' + hashlib.sha256(der).hexdigest()[:32] + '"'


class CRLPublisher:
    """Builds, signs and caches the CRL from the ledger's revoked, unexpired rows.

    Args:
        ledger: The certificate ledger.
        signer: The CA that signs (the local CA); when it is a :class:`CRLState`, its
            counters number the CRLs and say when a cached CRL is stale.
        lifetime: Time from ``thisUpdate`` to ``nextUpdate``.
        clock: Returns the current time, timezone-aware UTC.
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        signer: CRLSigner,
        lifetime: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.ledger = ledger
        self.signer = signer
        self.lifetime = lifetime
        self.clock = clock
        self._state = signer if isinstance(signer, CRLState) else None
        self._lock = threading.Lock()
        self._cached: tuple[int, PublishedCRL] | None = None
        self._last_number = 0
        self._others: dict[str, CRLPublisher] = {}

    def for_issuer(self, issuer: str) -> CRLPublisher:
        """The publisher of the CRL of the issuing CA with key id ``issuer`` (hex).

        One CRL per issuer: after a rotation, the retiring issuing CA's CRL is signed by
        its own key, until its certificates have expired.

        Raises:
            NotFoundError: the CA has no issuing CA of that key id (in use or retiring).
        """
        signer = (
            self.signer.crl_signer(issuer) if isinstance(self.signer, IssuerCRLSigners) else None
        )
        if signer is None:
            raise NotFoundError(f"crl: no issuing CA with key id {issuer}")
        with self._lock:
            publisher = self._others.get(issuer)
            if publisher is None or publisher.signer is not signer:
                publisher = CRLPublisher(
                    ledger=self.ledger, signer=signer, lifetime=self.lifetime, clock=self.clock
                )
                self._others[issuer] = publisher
            return publisher

    def crl(self) -> x509.CertificateRevocationList:
        """The current CRL, parsed (see :meth:`published`)."""
        return x509.load_der_x509_crl(self.published().der)

    def published(self) -> PublishedCRL:
        """The current signed CRL: cached, or rebuilt when stale.

        Raises:
            StoreUnavailableError: the ledger cannot answer now.
        """
        with self._lock:
            revision = self._state.crl_revision() if self._state is not None else None
            now = self.clock().replace(microsecond=0)
            cached = self._cached
            if (
                cached is not None
                and revision is not None
                and cached[0] == revision
                and now - cached[1].this_update < self.lifetime / 2
                and now >= cached[1].this_update
            ):
                return cached[1]
            published = self._build(now)
            if revision is not None:
                self._cached = (revision, published)
            return published

    def _build(self, now: datetime) -> PublishedCRL:
        number = self._next_number(int(now.timestamp()))
        # Serials come from our own ledger, validated when written: plain hex. Dates keep
        # their microseconds; both encoders write whole seconds.
        rows = [(int(s, 16), at or now, why) for s, at, why in self._revoked(now)]
        extensions: list[x509.Extension[x509.ExtensionType]] = [
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number))
        ]
        if rows and isinstance(self.signer, TBSSigner):
            # Linear and fast: the entries written as DER into a CRL signed without them,
            # then signed again (crl_entries.py).
            builder = x509.CertificateRevocationListBuilder(
                last_update=now, next_update=now + self.lifetime, extensions=extensions
            )
            empty = self.signer.sign_crl(builder).public_bytes(Encoding.DER)
            tbs, algorithm = splice_entries(empty, entries_der(rows))
            der = assemble(tbs, algorithm, self.signer.sign_tbs(tbs))
        else:
            # All entries at once: adding them one by one copies the builder's list each
            # time, which made building quadratic in the number of revoked certificates.
            builder = x509.CertificateRevocationListBuilder(
                last_update=now,
                next_update=now + self.lifetime,
                extensions=extensions,
                revoked_certificates=[_entry(*row) for row in rows],
            )
            der = self.signer.sign_crl(builder).public_bytes(Encoding.DER)
        return PublishedCRL(der, number, now, now + self.lifetime, _etag(der))

    def _revoked(self, now: datetime) -> list[tuple[str, datetime | None, RevocationReason | None]]:
        if isinstance(self.ledger, RevokedEntries):
            return self.ledger.revoked_entries(now=now)
        revoked = CertificateQuery(status=CertificateStatus.REVOKED, now=now)
        return [
            (row.serial, row.revoked_at, row.revocation_reason)
            for row in self.ledger.query(revoked)
            if row.not_after > now  # Expired: RFC 5280 lets a CRL drop it.
        ]

    def _next_number(self, floor: int) -> int:
        # The epoch-seconds floor keeps numbers above those of older versions (which used
        # epoch seconds) and above any the CA handed out before its counter was lost.
        if self._state is not None:
            return self._state.next_crl_number(at_least=floor)
        self._last_number = max(self._last_number + 1, floor)
        return self._last_number


def _entry(
    serial: int, revoked_at: datetime, reason: RevocationReason | None
) -> x509.RevokedCertificate:
    entry = (
        x509.RevokedCertificateBuilder()
        .serial_number(serial)
        .revocation_date(revoked_at.replace(microsecond=0))
    )
    flag = _REASON_FLAGS.get(reason or RevocationReason.UNSPECIFIED)
    if flag is not None:
        entry = entry.add_extension(x509.CRLReason(flag), critical=False)
    return entry.build()
