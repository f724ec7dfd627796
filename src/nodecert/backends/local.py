"""The local CA backend: a CA key and certificate in the data directory.

The CA is created on first start: ``<home>/ca/ca.key`` (PKCS#8, mode 0600, encrypted when
a passphrase is configured) and ``<home>/ca/ca.crt``. Several workers may start at once;
creation is serialized with an exclusive lock on ``<home>/ca/.lock``.
"""

from __future__ import annotations

import fcntl
import functools
import os
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from nodecert.core.errors import BackendUnavailableError, ConfigurationError
from nodecert.core.files import CounterFile, write_atomic
from nodecert.core.keys import KeyType, PrivateKey, generate_private_key, hash_for
from nodecert.core.values import Profile, RevocationReason, SignedCertificate, SigningRequest

__all__ = ["LocalCA", "client_extensions"]

_CA_LIFETIME = timedelta(days=3650)


class LocalCA:
    """A CA whose key lives on this machine. Implements ``CABackend``.

    It builds every certificate from the request's identity and public key, in this
    process (``builds_in_process``): it needs no CSR.

    Args:
        key: The CA private key.
        certificate: The self-signed CA certificate.
        organization: The ``O=`` of issued certificates.
        trust_domain: SPIFFE trust domain written into issued certificates.
    """

    builds_in_process = True

    def __init__(
        self,
        *,
        key: PrivateKey,
        certificate: x509.Certificate,
        organization: str,
        trust_domain: str,
        directory: Path | None = None,
    ) -> None:
        self._revocations: CounterFile | _MemoryCounter = _MemoryCounter()
        self._crl_numbers: CounterFile | _MemoryCounter = _MemoryCounter()
        if directory is not None:
            # The revocation count need not survive a crash (a restart rebuilds the CRL
            # anyway); the CRL number must, so that it never goes back.
            self._revocations = CounterFile(directory / "revocations", durable=False)
            self._crl_numbers = CounterFile(directory / "crlnumber")
        self._key = key
        self._organization = organization
        self._certificate = certificate
        self._chain = (certificate,)
        self._trust_domain = trust_domain
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
        self._aki = x509.Extension(aki.oid, False, aki)
        self._hash = hash_for(key)

    @property
    def certificate(self) -> x509.Certificate:
        """The CA certificate."""
        return self._certificate

    @classmethod
    def generate(
        cls,
        *,
        organization: str,
        trust_domain: str,
        key: PrivateKey | None = None,
        key_type: KeyType = KeyType.EC_P256,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> LocalCA:
        """A new self-signed CA held in memory only: nothing is written anywhere.

        For throwaway CAs (tests, a one-off demonstration). ``key`` reuses a given key;
        otherwise a new one of ``key_type`` is made.
        """
        key = key or generate_private_key(key_type)
        certificate = _self_signed(key, organization, clock())
        return cls(
            key=key, certificate=certificate, organization=organization, trust_domain=trust_domain
        )

    @classmethod
    def open_or_create(
        cls,
        directory: Path,
        *,
        organization: str,
        trust_domain: str,
        key_type: KeyType = KeyType.EC_P256,
        passphrase: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> LocalCA:
        """Load the CA from ``directory``, creating it there first if it does not exist.

        Raises:
            ConfigurationError: the key is encrypted and no (or a wrong) passphrase was
                given, or the files are unreadable or inconsistent.
        """
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_path, cert_path = directory / "ca.key", directory / "ca.crt"
        with os.fdopen(os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not key_path.exists():
                key = generate_private_key(key_type)
                cert = _self_signed(key, organization, clock())
                write_atomic(key_path, _key_bytes(key, passphrase), mode=0o600)
                # Public, but under NODECERT_HOME every file is private (0600).
                write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o600)
        key = _load_key(key_path, passphrase)
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"local CA: cannot read {cert_path}") from exc
        if cert.public_key() != key.public_key():
            raise ConfigurationError(f"local CA: {cert_path} does not match {key_path}")
        return cls(
            key=key,
            certificate=cert,
            organization=organization,
            trust_domain=trust_domain,
            directory=directory,
        )

    def issue(self, request: SigningRequest) -> SignedCertificate:
        """Sign ``request`` with the fixed client (or node) profile."""
        public_key = request.subject_public_key()
        extensions = client_extensions(request, public_key, self._trust_domain, self._aki)
        # All fields at once rather than through the builder's chained methods, which copy
        # the builder and re-check every extension at each step: a quarter of the signing
        # time. The values are ours and already checked; the times go in as the naive UTC
        # the builder's own setters would make of them. A test holds the output to the
        # chained builder's, byte for byte.
        builder = x509.CertificateBuilder(
            issuer_name=self._certificate.subject,
            subject_name=request.identity.subject(self._organization),
            public_key=public_key,
            serial_number=x509.random_serial_number(),
            not_valid_before=_naive_utc(request.not_before),
            not_valid_after=_naive_utc(request.not_after),
            extensions=extensions,
        )
        certificate = builder.sign(self._key, self._hash)
        return SignedCertificate(certificate=certificate, chain=self._chain)

    def chain(self) -> Sequence[x509.Certificate]:
        """The CA chain: the local CA is its own root."""
        return self._chain

    def revoke(
        self, certificate_serial: int, reason: RevocationReason, *, issuer: str | None = None
    ) -> None:
        """Count the revocation: the CRL built from the ledger is stale from now on.

        The revocation state itself is the ledger; only the counter is kept here, in a
        file every process using this CA shares (so a CRL cached by another worker is
        rebuilt too).

        Raises:
            BackendUnavailableError: the counter file cannot be written (a full disk).
        """
        _counter_io("the revocation count", self._revocations.advance)

    def crl_revision(self) -> int:
        """How many revocations this CA has been told of (see ``issuing.crl.CRLState``).

        Raises:
            BackendUnavailableError: the counter file cannot be read.
        """
        return _counter_io("the revocation count", self._revocations.value)

    def next_crl_number(self, *, at_least: int) -> int:
        """The next CRL number, persisted beside the CA key, above every earlier one.

        Raises:
            BackendUnavailableError: the counter file cannot be written (a full disk).
        """
        return _counter_io("the CRL number", lambda: self._crl_numbers.advance(at_least=at_least))

    def sign_tbs(self, tbs: bytes) -> bytes:
        """Sign DER bytes with the CA key and the hash of :meth:`sign_crl` (a CRL's TBS)."""
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(tbs, ec.ECDSA(self._hash))
        return self._key.sign(tbs, padding.PKCS1v15(), self._hash)

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        """Sign a CRL built by the caller with the CA key and AKI."""
        return (
            builder.issuer_name(self._certificate.subject)
            .add_extension(self._aki.value, critical=False)
            .sign(self._key, self._hash)
        )


# A counter file that cannot be read or written (ENOSPC, EIO, EROFS) is a CA that cannot
# answer now, like a remote CA that is down: a 503 with Retry-After, and a queued revocation
# stays queued for the background drain. Only the file's role and the OS's reason are said.
_COUNTER_RETRY_AFTER_S = 10


def _counter_io(what: str, call: Callable[[], int]) -> int:
    try:
        return call()
    except OSError as exc:
        raise BackendUnavailableError(
            f"ca: cannot read or write {what}: {exc.strerror or type(exc).__name__}",
            retry_after=_COUNTER_RETRY_AFTER_S,
        ) from exc


class _MemoryCounter:
    """A :class:`CounterFile` for a CA that has no directory (kept in memory)."""

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def value(self) -> int:
        return self._value

    def advance(self, *, at_least: int = 0) -> int:
        with self._lock:
            self._value = max(self._value + 1, at_least)
            return self._value


def client_extensions(
    request: SigningRequest,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    trust_domain: str,
    aki: x509.Extension[x509.AuthorityKeyIdentifier],
) -> list[x509.Extension[x509.ExtensionType]]:
    """The extensions of the nodecert client (or node) profile, in certificate order."""
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(request.identity.spiffe_id(trust_domain))
    ]
    if request.profile is Profile.NODE:
        names.extend(x509.DNSName(name) for name in request.dns_names)
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
    return tuple(x509.Extension(value.oid, critical, value) for value, critical in values)


def _naive_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("a certificate time must be timezone-aware")
    return at.astimezone(UTC).replace(tzinfo=None)


def _self_signed(key: PrivateKey, organization: str, now: datetime) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} local CA"),
        ]
    )
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hash_for(key))
    )


def _key_bytes(key: PrivateKey, passphrase: str | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _load_key(path: Path, passphrase: str | None) -> PrivateKey:
    data = path.read_bytes()
    encrypted = b"ENCRYPTED" in data.split(b"\n", 1)[0]
    if encrypted and not passphrase:
        raise ConfigurationError(
            f"local CA: {path} is encrypted; set NODECERT_CA_PASSPHRASE to unlock it"
        )
    try:
        key = serialization.load_pem_private_key(
            data, password=passphrase.encode() if encrypted and passphrase else None
        )
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"local CA: cannot load {path} (wrong NODECERT_CA_PASSPHRASE?)"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"local CA: {path} is not an RSA or EC key")
    return key
