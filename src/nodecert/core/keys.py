"""Key types, key generation, CSR building and client-CSR validation."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nodecert.core.errors import CSRError, InvalidRequestError
from nodecert.core.identity import Identity

__all__ = [
    "MAX_CSR_BYTES",
    "ClientCSR",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "build_csr",
    "fingerprint",
    "generate_private_key",
    "hash_for",
    "key_id",
    "key_type_of",
    "private_key_pem",
    "read_client_csr",
]

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# A CSR for an RSA-4096 key with a long subject is under 2 KiB of PEM; 16 KiB leaves room
# for honest extensions and refuses CSRs stuffed with junk before they are parsed.
MAX_CSR_BYTES = 16 * 1024
_MAX_RSA_BITS = 8192


class KeyType(enum.StrEnum):
    """The key types nodecert generates and accepts."""

    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"

    @classmethod
    def parse(cls, value: object) -> KeyType:
        """Parse a ``keyType`` request field.

        Raises:
            InvalidRequestError: naming the accepted values.
        """
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return cls(value)
        except ValueError:
            accepted = ", ".join(k.value for k in cls)
            shown = str(value)[:40]
            raise InvalidRequestError(
                f"keyType: {shown!r} is not supported (use one of {accepted})"
            ) from None

    @property
    def is_rsa(self) -> bool:
        """True for the RSA key types."""
        return self.value.startswith("rsa")


_CURVES: dict[KeyType, ec.EllipticCurve] = {
    KeyType.EC_P256: ec.SECP256R1(),
    KeyType.EC_P384: ec.SECP384R1(),
}
_CURVE_NAMES = {curve.name: key_type for key_type, curve in _CURVES.items()}


def generate_private_key(key_type: KeyType) -> PrivateKey:
    """Generate a fresh private key of ``key_type`` (RSA exponent 65537)."""
    if key_type.is_rsa:
        bits = int(key_type.value.split("-")[1])
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return ec.generate_private_key(_CURVES[key_type])


def key_type_of(public_key: object) -> KeyType:
    """Return the :class:`KeyType` of a public key, refusing weak or unusual keys.

    RSA keys of 2048 bits or more (up to 8192) are accepted; those of a non-standard size
    are reported as the next smaller standard size's family (for the ledger only).

    Raises:
        CSRError: for RSA under 2048 bits, curves other than P-256/P-384, or other
            algorithms (Ed25519, DSA, ...).
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        if bits < 2048:
            raise CSRError(f"csr: RSA key of {bits} bits is too weak (minimum 2048)")
        if bits > _MAX_RSA_BITS:
            raise CSRError(f"csr: RSA key of {bits} bits is too large (maximum {_MAX_RSA_BITS})")
        if public_key.public_numbers().e != 65537:
            raise CSRError("csr: RSA public exponent must be 65537")
        if bits >= 4096:
            return KeyType.RSA_4096
        return KeyType.RSA_3072 if bits >= 3072 else KeyType.RSA_2048
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        key_type = _CURVE_NAMES.get(public_key.curve.name)
        if key_type is None:
            raise CSRError(
                f"csr: curve {public_key.curve.name} is not supported (use P-256 or P-384)"
            )
        return key_type
    raise CSRError(
        f"csr: {type(public_key).__name__.lstrip('_')} keys are not supported (use RSA or EC)"
    )


def build_csr(
    key: PrivateKey, identity: Identity, *, organization: str, trust_domain: str
) -> x509.CertificateSigningRequest:
    """Build the CSR that carries ``identity`` (subject and SPIFFE SAN), signed by ``key``."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(identity.subject(organization))
        .add_extension(identity.san(trust_domain), critical=False)
        .sign(key, hash_for(key))
    )


@dataclass(frozen=True, slots=True)
class ClientCSR:
    """A client's CSR that :func:`read_client_csr` checked, with its public key.

    The key is kept as read: reading it again from the CSR parses it again (about as long
    as loading the whole CSR).
    """

    request: x509.CertificateSigningRequest
    key_type: KeyType
    public_key: PublicKey


def read_client_csr(pem: object) -> ClientCSR:
    """Parse and check a CSR sent by a client.

    Only the CSR's public key is ever used: the subject, SANs and extensions it asks for
    are ignored, because the identity comes from the token and the request.

    Raises:
        CSRError: when it is not a PEM CSR, is too large, has a bad signature or a key that
            :func:`key_type_of` refuses.
    """
    if not isinstance(pem, str):
        raise CSRError("csr: must be a PEM string")
    data = pem.encode("utf-8", "replace")
    if len(data) > MAX_CSR_BYTES:
        raise CSRError(f"csr: {len(data)} bytes is over the {MAX_CSR_BYTES}-byte limit")
    # Java keytool writes "NEW CERTIFICATE REQUEST"; both name the same PKCS#10 structure.
    data = data.replace(b"NEW CERTIFICATE REQUEST-----", b"CERTIFICATE REQUEST-----")
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in data:
        raise CSRError("csr: expected a PEM block 'BEGIN CERTIFICATE REQUEST'")
    try:
        csr = x509.load_pem_x509_csr(data)
    except x509.InvalidVersion as exc:
        # PKCS#10 (RFC 2986) knows only version 0 (v1); InvalidVersion is no ValueError.
        raise CSRError(f"csr: version {exc.parsed_version} is not PKCS#10 v1") from exc
    except ValueError as exc:
        raise CSRError("csr: not a parsable PKCS#10 request") from exc
    try:
        public_key = csr.public_key()
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CSRError("csr: its public key or signature cannot be read") from exc
    key_type = key_type_of(public_key)
    if not signature_ok:
        raise CSRError("csr: signature does not match its public key (proof of possession)")
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise TypeError("a key that key_type_of took is RSA or EC")  # For the type checker.
    return ClientCSR(csr, key_type, public_key)


def private_key_pem(key: PrivateKey) -> str:
    """PKCS#8 PEM of ``key``, unencrypted (returned to the caller over TLS only)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    """The signature hash that matches ``key``'s strength (SHA-384 for P-384)."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def key_id(certificate: x509.Certificate) -> str:
    """A CA certificate's subject key identifier, lower-case hex: how issuing CAs are named.

    The SKI extension when present, else RFC 5280's method 1 (SHA-1 of the public key).
    """
    try:
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(certificate.public_key())
    return ski.digest.hex()


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 fingerprint of a certificate, lower-case hex."""
    return certificate.fingerprint(hashes.SHA256()).hex()
