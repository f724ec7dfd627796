"""The local CA backend: CA keys and certificates in the data directory.

A new CA has two tiers (see :mod:`nodecert.backends.hierarchy`), in ``<home>/ca/``:

- ``root.crt``: the self-signed root, the trust anchor nodes and gateways keep;
- ``root.key``: its key (PKCS#8, 0600, encrypted when a passphrase is configured), unless
  ``nodecert ca init --root-key-out PATH`` wrote it elsewhere to be taken offline: the
  service never reads it;
- ``ca.key`` and ``ca.crt``: the issuing intermediate, which signs every certificate and
  the CRL.

A home made by an earlier version has no ``root.crt``: its ``ca.crt`` is a self-signed
root that signs certificates itself, and it keeps working unchanged. Several workers may
start at once; creation is serialized with an exclusive lock on ``<home>/ca/.lock``, and
``ca.key`` is written last, so a home is created completely or created again.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from nodecert.backends.hierarchy import load_key, make_intermediate, make_root, make_single_root
from nodecert.backends.local_files import create_two_tier, issuing_name, locked, read_chain
from nodecert.core.errors import BackendUnavailableError
from nodecert.core.files import CounterFile
from nodecert.core.keys import KeyType, PrivateKey, generate_private_key, hash_for
from nodecert.core.values import Profile, RevocationReason, SignedCertificate, SigningRequest

__all__ = ["LocalCA", "client_extensions"]


class LocalCA:
    """A CA whose issuing key lives on this machine. Implements ``CABackend``.

    It builds every certificate from the request's identity and public key, in this
    process (``builds_in_process``): it needs no CSR.

    Args:
        key: The issuing CA's private key.
        certificate: The issuing CA's certificate (an intermediate, or a one-tier root).
        organization: The ``O=`` of issued certificates.
        trust_domain: SPIFFE trust domain written into issued certificates.
        directory: Where the CRL counters are kept (None: in memory).
        chain: The CA chain, ``certificate`` first, up to and including the root
            (default: ``certificate`` alone, a one-tier CA).
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
        chain: Sequence[x509.Certificate] | None = None,
    ) -> None:
        self._revocations: CounterFile | _MemoryCounter = _MemoryCounter()
        self._crl_numbers: CounterFile | _MemoryCounter = _MemoryCounter()
        if directory is not None:
            # The revocation count need not survive a crash (a restart rebuilds the CRL
            # anyway); the CRL number must, so that it never goes back.
            self._revocations = CounterFile(directory / "revocations", durable=False)
            self._crl_numbers = CounterFile(directory / "crlnumber")
        if chain is not None and (not chain or chain[0] != certificate):
            raise ValueError("LocalCA: the chain must start with the issuing certificate")
        self._key = key
        self._organization = organization
        self._certificate = certificate
        self._chain = tuple(chain) if chain is not None else (certificate,)
        self._trust_domain = trust_domain
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
        self._aki = x509.Extension(aki.oid, False, aki)
        self._hash = hash_for(key)
        self._expires = _naive_utc(certificate.not_valid_after_utc)

    @property
    def certificate(self) -> x509.Certificate:
        """The issuing CA certificate."""
        return self._certificate

    @property
    def root(self) -> x509.Certificate:
        """The root (the issuing certificate itself for a one-tier CA)."""
        return self._chain[-1]

    @classmethod
    def generate(
        cls,
        *,
        organization: str,
        trust_domain: str,
        key: PrivateKey | None = None,
        key_type: KeyType = KeyType.EC_P256,
        two_tier: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> LocalCA:
        """A new CA held in memory only: nothing is written anywhere.

        For throwaway CAs (tests, a one-off demonstration). ``key`` reuses a given key
        for the issuing CA; otherwise a new one of ``key_type`` is made. With
        ``two_tier`` a root signs the issuing intermediate; without, the CA is one
        self-signed root.
        """
        key = key or generate_private_key(key_type)
        now = clock()
        if not two_tier:
            certificate = make_single_root(key, organization, now)
            return cls(
                key=key,
                certificate=certificate,
                organization=organization,
                trust_domain=trust_domain,
            )
        root_key = generate_private_key(key_type)
        root = make_root(root_key, organization, now)
        certificate = make_intermediate(
            key.public_key(), issuing_name(organization, now), root_key=root_key, root=root, now=now
        )
        return cls(
            key=key,
            certificate=certificate,
            organization=organization,
            trust_domain=trust_domain,
            chain=(certificate, root),
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
        """Load the CA from ``directory``, creating a two-tier one there first if none exists.

        Raises:
            ConfigurationError: the key is encrypted and no (or a wrong) passphrase was
                given, or the files are unreadable or inconsistent.
        """
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locked(directory):
            if not (directory / "ca.key").exists():
                create_two_tier(
                    directory,
                    organization=organization,
                    key_type=key_type,
                    passphrase=passphrase,
                    now=clock(),
                )
        return cls.open(
            directory, organization=organization, trust_domain=trust_domain, passphrase=passphrase
        )

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        organization: str,
        trust_domain: str,
        passphrase: str | None = None,
    ) -> LocalCA:
        """Load an existing CA (two-tier, or the one-tier CA of an earlier version).

        Raises:
            ConfigurationError: no CA there, a locked or mismatched key, or a chain that
                does not hold together.
        """
        key_path = directory / "ca.key"
        key = load_key(key_path, passphrase)
        chain = read_chain(directory, key.public_key())
        return cls(
            key=key,
            certificate=chain[0],
            organization=organization,
            trust_domain=trust_domain,
            directory=directory,
            chain=chain,
        )

    def issue(self, request: SigningRequest) -> SignedCertificate:
        """Sign ``request`` with the fixed client (or node) profile."""
        not_after = _naive_utc(request.not_after)
        if not_after > self._expires:
            # A certificate that outlives its issuer fails every chain check once the
            # issuer expires; refuse it (as Vault does by default) rather than cut it short.
            raise BackendUnavailableError(
                f"ca: the issuing CA expires at {self._expires.isoformat()}Z, before this"
                " certificate would: rotate it (nodecert ca rotate)"
            )
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
            not_valid_after=not_after,
            extensions=extensions,
        )
        certificate = builder.sign(self._key, self._hash)
        return SignedCertificate(certificate=certificate, chain=self._chain)

    def chain(self) -> Sequence[x509.Certificate]:
        """The CA chain: the issuing CA first, up to and including the root."""
        return self._chain

    def revoke(
        self, certificate_serial: int, reason: RevocationReason, *, issuer: str | None = None
    ) -> None:
        """Count the revocation: the CRL built from the ledger is stale from now on.

        The revocation state itself is the ledger; only the counter is kept here, in a
        file every process using this CA shares (so a CRL cached by another worker is
        rebuilt too).
        """
        self._revocations.advance()

    def crl_revision(self) -> int:
        """How many revocations this CA has been told of (see ``issuing.crl.CRLState``)."""
        return self._revocations.value()

    def next_crl_number(self, *, at_least: int) -> int:
        """The next CRL number, persisted beside the CA key, above every earlier one."""
        return self._crl_numbers.advance(at_least=at_least)

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
