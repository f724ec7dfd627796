"""The leaf profiles of the local CA: the client and node certificate extensions.

See the README's "What a certificate says"; ``Identity`` names the subject and SAN.
"""

from __future__ import annotations

import functools
import ipaddress
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from nodecert.core.values import Profile, SigningRequest

__all__ = ["client_extensions", "encoded", "naive_utc"]


def client_extensions(
    request: SigningRequest,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    trust_domain: str,
    aki: x509.Extension[x509.ExtensionType],
) -> list[x509.Extension[x509.ExtensionType]]:
    """The extensions of the nodecert client (or node) profile, in certificate order.

    ``aki`` is the issuer's, :func:`encoded` (it is the same on every certificate).
    """
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(request.identity.spiffe_id(trust_domain))
    ]
    if request.profile is Profile.NODE:
        names.extend(x509.DNSName(name) for name in request.dns_names)
        names.extend(x509.IPAddress(ipaddress.ip_address(a)) for a in request.ip_addresses)
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    return [
        *_fixed_extensions(request.profile, isinstance(public_key, rsa.RSAPublicKey)),
        x509.Extension(ski.oid, False, ski),
        aki,
        x509.Extension(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME, False, x509.SubjectAlternativeName(names)
        ),
    ]


@functools.cache
def _fixed_extensions(
    profile: Profile, is_rsa: bool
) -> tuple[x509.Extension[x509.ExtensionType], ...]:
    # The same for every certificate of a profile and key type: made once.
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if profile is Profile.NODE:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    values: tuple[tuple[x509.ExtensionType, bool], ...] = (
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        ),
        (x509.ExtendedKeyUsage(usages), False),
    )
    return tuple(encoded(x509.Extension(value.oid, critical, value)) for value, critical in values)


def encoded(extension: x509.Extension[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    """``extension`` with its value as DER, made once, for a certificate builder to copy.

    The builder encodes a typed value afresh for every certificate, reading each of its
    fields back from Python: for the extensions that are the same on every certificate of
    a profile (and the issuer's AKI) that was a quarter of the time of signing one. The
    bytes in the certificate are the same (a test holds issued certificates to the chained
    builder's, byte for byte); a certificate parsed back has the typed extensions.
    """
    value = x509.UnrecognizedExtension(extension.oid, extension.value.public_bytes())
    return x509.Extension(extension.oid, extension.critical, value)


def naive_utc(at: datetime) -> datetime:
    """``at`` as the naive UTC time the certificate builder's own setters would make.

    Raises:
        ValueError: ``at`` is naive.
    """
    if at.tzinfo is None:
        raise ValueError("a certificate time must be timezone-aware")
    return at.astimezone(UTC).replace(tzinfo=None)
