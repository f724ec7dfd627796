"""The CRL of the local CA, built from the ledger.

Node-side checks read the ledger directly and need no CRL; the CRL is for relying parties
that only speak X.509 (nginx ``ssl_crl``, OpenSSL, Java trust managers). It follows the
RFC 5280 profile: version 2, ``nextUpdate``, a CRL number and the AKI; entries carry a
reason code unless it is ``unspecified`` (section 5.3.1 says to omit it then), and
certificates that have expired are dropped (section 3.3 allows it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cryptography import x509

from nodecert.core.identity import parse_serial
from nodecert.core.ports import (
    CertificateQuery,
    CertificateStatus,
    CRLSigner,
    Ledger,
    RevocationReason,
    query_ledger,
)

__all__ = ["CRLPublisher"]

_REASON_FLAGS = {
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CRLPublisher:
    """Builds and signs the CRL from the ledger's revoked, unexpired rows.

    Args:
        ledger: The certificate ledger.
        signer: The CA that signs (the local CA).
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

    def crl(self) -> x509.CertificateRevocationList:
        """A freshly signed CRL.

        Raises:
            StoreUnavailableError: the ledger cannot answer now.
        """
        now = self.clock().replace(microsecond=0)
        builder = (
            x509.CertificateRevocationListBuilder()
            .last_update(now)
            .next_update(now + self.lifetime)
            # Seconds since the epoch only ever grow, so the number is monotonic across
            # restarts and workers without any shared counter (RFC 5280 section 5.2.3).
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        )
        revoked = CertificateQuery(status=CertificateStatus.REVOKED, now=now)
        for row in query_ledger(self.ledger, revoked):
            if row.not_after <= now:
                continue  # Expired: RFC 5280 lets a CRL drop it.
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(parse_serial(row.serial))
                .revocation_date((row.revoked_at or now).replace(microsecond=0))
            )
            flag = _REASON_FLAGS.get(row.revocation_reason or RevocationReason.UNSPECIFIED)
            if flag is not None:
                entry = entry.add_extension(x509.CRLReason(flag), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return self.signer.sign_crl(builder)
