"""The local CA's hierarchy: a root, the issuing intermediates it signs, and their keys.

A new local CA has two tiers (RFC 5280 section 6.1): a self-signed root that signs
nothing but intermediates (and could live offline), and an issuing intermediate that signs
client and node certificates. The profiles:

- root: BasicConstraints CA:TRUE (critical, no path length: the root may one day sign an
  intermediate that signs another), KeyUsage keyCertSign + cRLSign (critical), SKI;
- intermediate: BasicConstraints CA:TRUE pathLen 0 (critical: it signs leaves only),
  KeyUsage keyCertSign + cRLSign (critical), SKI, AKI of the root. No extended key usage:
  one in a CA certificate would constrain every leaf below it, and the intermediate signs
  both the client profile and the node (server) profile.

An intermediate signed from a CSR (:func:`sign_intermediate`) takes only the CSR's subject
and public key; the profile is always the one above, and its validity never outlasts
the root's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from nodecert.core.errors import ConfigurationError, CSRError
from nodecert.core.keys import MAX_CSR_BYTES, PrivateKey, hash_for, key_type_of

__all__ = [
    "INTERMEDIATE_LIFETIME",
    "ROOT_LIFETIME",
    "ca_name",
    "key_bytes",
    "load_key",
    "make_intermediate",
    "make_root",
    "make_single_root",
    "read_intermediate_csr",
    "sign_intermediate",
]

ROOT_LIFETIME = timedelta(days=3650)
INTERMEDIATE_LIFETIME = timedelta(days=1095)
# An encrypted PKCS#8 RSA-8192 key is under 7 KiB.
_MAX_KEY_BYTES = 64 * 1024
# RFC 5280's upper bound for a commonName (ub-common-name).
_MAX_CN = 64
# Certificates made now are valid from a little earlier: clocks of relying parties drift.
_BACKDATE = timedelta(minutes=5)

_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def ca_name(organization: str, label: str) -> x509.Name:
    """``O=<organization>, CN=<organization> <label>``, the CN cut to RFC 5280's 64."""
    room = _MAX_CN - len(label) - 1
    common = f"{organization[:room].rstrip()} {label}".strip()
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def make_root(
    key: PrivateKey, organization: str, now: datetime, *, lifetime: timedelta = ROOT_LIFETIME
) -> x509.Certificate:
    """A self-signed root for a two-tier CA (signs intermediates only)."""
    return _self_signed(key, ca_name(organization, "root CA"), now, lifetime, path_length=None)


def make_single_root(key: PrivateKey, organization: str, now: datetime) -> x509.Certificate:
    """The one-tier CA of earlier versions: a root that signs leaves itself (pathLen 0)."""
    return _self_signed(key, ca_name(organization, "local CA"), now, ROOT_LIFETIME, path_length=0)


def make_intermediate(
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    subject: x509.Name,
    *,
    root_key: PrivateKey,
    root: x509.Certificate,
    now: datetime,
    lifetime: timedelta = INTERMEDIATE_LIFETIME,
) -> x509.Certificate:
    """An issuing intermediate for ``public_key``, signed by the root.

    Its validity ends with the root's at the latest (a certificate that outlives its
    issuer is cut short by every relying party anyway).

    Raises:
        ConfigurationError: ``root_key`` is not the key of ``root``, ``root`` is no CA that
            may sign intermediates, or the root has expired.
    """
    if root.public_key() != root_key.public_key():
        raise ConfigurationError("root CA: the root key does not match the root certificate")
    try:
        basic = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = x509.BasicConstraints(ca=False, path_length=None)
    if not basic.ca or basic.path_length == 0:
        raise ConfigurationError(
            "root CA: its certificate may not sign intermediates"
            " (not a CA, or path length 0: a one-tier CA of an earlier version)"
        )
    not_after = min(now + lifetime, root.not_valid_after_utc)
    if not_after <= now:
        raise ConfigurationError("root CA: its certificate has expired")
    try:
        ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - _BACKDATE, root.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
        .sign(root_key, hash_for(root_key))
    )


def sign_intermediate(
    csr_pem: bytes,
    *,
    root_key: PrivateKey,
    root: x509.Certificate,
    now: datetime,
    lifetime: timedelta = INTERMEDIATE_LIFETIME,
) -> x509.Certificate:
    """Sign an issuing intermediate from a PKCS#10 CSR with an (offline) root key.

    Only the CSR's subject and public key are used; its extensions are ignored.

    Raises:
        CSRError: not one PEM CSR, too large, a bad signature, a weak or unsupported key,
            or an empty subject.
        ConfigurationError: the root cannot sign (see :func:`make_intermediate`).
    """
    csr = read_intermediate_csr(csr_pem)
    public_key = csr.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CSRError("csr: only RSA and EC keys are supported")  # pragma: no cover
    subject = csr.subject
    return make_intermediate(
        public_key, subject, root_key=root_key, root=root, now=now, lifetime=lifetime
    )


def read_intermediate_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    """Parse and check the PKCS#10 CSR of an issuing intermediate (one PEM block).

    Raises:
        CSRError: not one PEM CSR, too large, a bad signature, a weak or unsupported key,
            or an empty subject.
    """
    if len(csr_pem) > MAX_CSR_BYTES:
        raise CSRError(f"csr: {len(csr_pem)} bytes is over the {MAX_CSR_BYTES}-byte limit")
    if csr_pem.count(b"-----BEGIN CERTIFICATE REQUEST-----") != 1:
        raise CSRError("csr: expected one PEM block 'BEGIN CERTIFICATE REQUEST'")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        public_key = csr.public_key()
        signature_ok = csr.is_signature_valid
        subject = csr.subject
        # Reading every attribute now: a malformed name must fail here, as a CSRError.
        subject.rfc4514_string()
    except x509.InvalidVersion as exc:
        raise CSRError(f"csr: version {exc.parsed_version} is not PKCS#10 v1") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CSRError("csr: not a parsable PKCS#10 request") from exc
    key_type_of(public_key)
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CSRError("csr: only RSA and EC keys are supported")  # pragma: no cover
    if not signature_ok:
        raise CSRError("csr: signature does not match its public key (proof of possession)")
    if len(subject) == 0:
        raise CSRError("csr: the subject is empty (an intermediate needs a name)")
    return csr


def key_bytes(key: PrivateKey, passphrase: str | None) -> bytes:
    """PKCS#8 PEM of a CA key, encrypted with ``passphrase`` when one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_key(path: Path, passphrase: str | None) -> PrivateKey:
    """Load a CA key written by :func:`key_bytes`.

    Raises:
        ConfigurationError: unreadable, encrypted without (or with a wrong) passphrase, or
            not an RSA or EC key. The message names the file, never the passphrase.
    """
    try:
        with open(path, "rb") as stream:
            data = stream.read(_MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"local CA: cannot read {path}: {exc.strerror}") from exc
    if len(data) > _MAX_KEY_BYTES:
        raise ConfigurationError(f"local CA: {path} is too large for a key")
    encrypted = b"ENCRYPTED" in data.split(b"\n", 1)[0]
    if encrypted and not passphrase:
        raise ConfigurationError(
            f"local CA: {path} is encrypted; set NODECERT_CA_PASSPHRASE to unlock it"
        )
    try:
        key = serialization.load_pem_private_key(
            data, password=passphrase.encode() if encrypted and passphrase else None
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError(
            f"local CA: cannot load {path} (wrong NODECERT_CA_PASSPHRASE?)"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"local CA: {path} is not an RSA or EC key")
    return key


def _self_signed(
    key: PrivateKey,
    name: x509.Name,
    now: datetime,
    lifetime: timedelta,
    *,
    path_length: int | None,
) -> x509.Certificate:
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hash_for(key))
    )
