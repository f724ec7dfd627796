"""Whether a certificate waiting for its renewal was revoked meanwhile (``nodecert renew``).

A certificate revoked long before it is due (its node was transferred or removed, a key
reported compromised) used to show up only once due, as a 403, after days of "not due" while
its holder kept presenting it. ``nodecert renew`` now asks the service's CRL (``GET
/v1/crl``, no token) at most once a day: the time of the next check is kept beside the
certificate in ``.<name>.revocation-check``. A CRL that does not verify with the service's
CA, or no answer, is no answer: tried again an hour later, and never a failure by itself.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nodecert.client.renewal._target import RenewalTarget
from nodecert.core.errors import InvalidRequestError, NodecertError, NotFoundError

__all__ = ["CHECK_EVERY", "RETRY_AFTER_FAILURE", "RevokedAtService", "check_revocation"]

CHECK_EVERY = timedelta(days=1)
RETRY_AFTER_FAILURE = timedelta(hours=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RevokedAtService:
    """The service's CRL lists the certificate."""

    revoked_at: datetime
    reason: str | None


def check_revocation(
    target: RenewalTarget, certificate: x509.Certificate, *, now: datetime
) -> RevokedAtService | None:
    """Ask the service's CRL about ``certificate`` unless it was asked less than a day ago.

    Returns:
        What the CRL says when it lists the certificate; None when it does not, when no
        check was due, or when there was no usable answer.
    """
    stamp = target.cert.parent / f".{target.cert.name}.revocation-check"
    if now < _next_check(stamp):
        return None
    try:
        crl = _crl_of_issuer(target, certificate)
        chain = x509.load_pem_x509_certificates(target.client.ca_chain().encode())
    except NotFoundError:
        _write_stamp(stamp, now + CHECK_EVERY)  # No CRL here (ACM PCA publishes its own).
        return None
    except (NodecertError, ValueError):
        _write_stamp(stamp, now + RETRY_AFTER_FAILURE)
        return None
    if not any(_signed_by(crl, ca) for ca in chain if ca.subject == crl.issuer):
        _write_stamp(stamp, now + RETRY_AFTER_FAILURE)
        return None
    _write_stamp(stamp, now + CHECK_EVERY)
    entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
    if entry is None:
        return None
    reason: str | None = None
    with contextlib.suppress(x509.ExtensionNotFound, ValueError):
        reason = str(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value)
    return RevokedAtService(revoked_at=entry.revocation_date_utc, reason=reason)


def _crl_of_issuer(
    target: RenewalTarget, certificate: x509.Certificate
) -> x509.CertificateRevocationList:
    # The CRL of the CA that issued this certificate: after a rotation that is a retiring
    # issuer, whose revocations the active issuer's CRL does not list. A service from
    # before rotation (no ?issuer=), or one that never rotated, answers the plain CRL.
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        issuer = aki.value.key_identifier
    except (x509.ExtensionNotFound, ValueError):
        issuer = None
    if issuer:
        with contextlib.suppress(NotFoundError, InvalidRequestError):
            return target.client.crl(issuer=issuer.hex())
    return target.client.crl()


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    key = ca.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return False
    return crl.is_signature_valid(key)


def _next_check(stamp: Path) -> datetime:
    try:
        when = datetime.fromisoformat(stamp.read_text(encoding="ascii").strip()[:64])
    except (OSError, ValueError, UnicodeDecodeError):
        return _EPOCH
    return when if when.tzinfo is not None else _EPOCH


def _write_stamp(stamp: Path, when: datetime) -> None:
    # Best effort: a directory the renewal cannot write in fails the renewal itself later.
    with contextlib.suppress(OSError):
        temporary = stamp.with_name(stamp.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(when.isoformat())
        os.replace(temporary, stamp)
