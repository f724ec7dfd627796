"""The root's CRL: revoking issuing intermediates retired at once (their key leaked).

After ``nodecert ca rotate --retire-now`` the access decision refuses the old intermediate's
certificates at once, but a relying party that checks TLS alone against the root still
accepts a client that presents the old intermediate: nothing the root signed says it is
revoked. :func:`sign_root_crl` makes that statement: a CRL signed by the root (RFC 5280,
version 2, with AKI and CRL number) listing every intermediate retired at once with the
reason ``keyCompromise`` and the time it was retired. Entries are never dropped: those of
the root's previous CRL (``<home>/ca/root.crl``) are carried over, so that pruning a
retired intermediate from the home (``nodecert ca prune``) does not un-revoke it.

The root key is usually offline, so this CRL is signed rarely and lives long (``lifetime``):
sign it again before its ``nextUpdate``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from nodecert.backends.local.home import RETIRED_AT, RETIRED_NOW, read_certificate, retired_entries
from nodecert.backends.local.issuer import IssuerSigner, MemoryCounter
from nodecert.core.errors import ConfigurationError
from nodecert.core.keys import PrivateKey, key_id
from nodecert.support.files import CounterFile, write_atomic

__all__ = ["ROOT_CRL", "served_root_crl", "sign_root_crl"]

ROOT_CRL = "root.crl"
log = logging.getLogger("nodecert")
# The root's CRL numbers, increasing (RFC 5280, 5.2.3), apart from the issuers'.
_NUMBERS = "root-crlnumber"


def sign_root_crl(
    directory: Path, *, root_key: PrivateKey, now: datetime, lifetime: timedelta
) -> x509.CertificateRevocationList:
    """Sign the root's CRL for the home CA in ``directory`` and write it to ``root.crl``.

    Raises:
        ConfigurationError: no two-tier CA there, a key that is not the root's, or a
            previous ``root.crl`` that the root did not sign.
    """
    path = directory / "root.crt"
    if not path.exists():
        raise ConfigurationError(f"ca root-crl: no root in {directory} (a one-tier CA)")
    root = read_certificate(path)
    if root_key.public_key() != root.public_key():
        raise ConfigurationError("ca root-crl: the key given is not the root's key")
    entries = _previous(directory / ROOT_CRL, root)
    for serial, retired_at in _retired_now(directory, root):
        entries.setdefault(serial, retired_at)
    builder = x509.CertificateRevocationListBuilder(last_update=now, next_update=now + lifetime)
    for serial, revoked_at in sorted(entries.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(revoked_at)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build()
        )
    signer = IssuerSigner(
        root_key,
        root,
        revocations=MemoryCounter(),
        crl_numbers=CounterFile(directory / _NUMBERS),
    )
    number = signer.next_crl_number(at_least=int(now.timestamp()))
    crl = signer.sign_crl(builder.add_extension(x509.CRLNumber(number), critical=False))
    # Public: every relying party may have it.
    write_atomic(directory / ROOT_CRL, crl.public_bytes(Encoding.DER), mode=0o644)
    return crl


def served_root_crl(directory: Path) -> tuple[str, bytes] | None:
    """The root's key id and the CRL ``ca root-crl`` last wrote (DER), for ``GET /v1/crl``.

    None when there is nothing to serve: a one-tier CA, no root CRL signed yet, or a file
    that is not a CRL with a ``nextUpdate`` signed by this root (logged, never served).
    """
    try:
        der = (directory / ROOT_CRL).read_bytes()
        root = read_certificate(directory / "root.crt")
    except (OSError, ConfigurationError):
        return None
    try:
        crl = x509.load_der_x509_crl(der)
        signed = crl.issuer == root.subject and crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
    except ValueError:
        signed = False
    if not signed or crl.next_update_utc is None:
        log.warning("local CA: %s is not a CRL of this root: not served", directory / ROOT_CRL)
        return None
    return key_id(root), der


def _previous(path: Path, root: x509.Certificate) -> dict[int, datetime]:
    if not path.exists():
        return {}
    try:
        crl = x509.load_der_x509_crl(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"ca root-crl: {path} is not a CRL") from exc
    if crl.issuer != root.subject or not crl.is_signature_valid(root.public_key()):  # type: ignore[arg-type]
        raise ConfigurationError(f"ca root-crl: {path} was not signed by this root")
    return {entry.serial_number: entry.revocation_date_utc for entry in crl}


def _retired_now(directory: Path, root: x509.Certificate) -> list[tuple[int, datetime]]:
    found: list[tuple[int, datetime]] = []
    # Never the intermediate in use (read_home skips it too).
    in_use = key_id(read_certificate(directory / "ca.crt"))
    for entry in retired_entries(directory, in_use):
        if not (entry / RETIRED_NOW).exists():
            continue
        certificate = read_certificate(entry / "ca.crt")
        try:
            certificate.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue  # Under an earlier root: that root's CRL would list it.
        try:
            retired_at = datetime.fromisoformat((entry / RETIRED_AT).read_text().strip())
        except (OSError, ValueError):
            retired_at = certificate.not_valid_before_utc
        found.append((certificate.serial_number, retired_at))
    return found
