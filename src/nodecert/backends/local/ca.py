"""The local CA backend: CA keys and certificates in the data directory.

A new CA has two tiers (see :mod:`nodecert.backends.local.hierarchy`), in ``<home>/ca/``:

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

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from nodecert.backends.local.hierarchy import (
    load_key,
    make_intermediate,
    make_root,
    make_single_root,
)
from nodecert.backends.local.home import (
    RETIRED,
    HomeCA,
    create_two_tier,
    issuing_name,
    key_id,
    locked,
    read_home,
    rotation_file,
    stamp_of,
    unchanged,
)
from nodecert.backends.local.issuer import Counter, IssuerSigner, MemoryCounter, counter_io
from nodecert.backends.local.profile import client_extensions, naive_utc
from nodecert.backends.local.root_crl import ROOT_CRL, served_root_crl
from nodecert.backends.local.rotation import KEYREF, finish
from nodecert.backends.signers.external import ExternalSigner
from nodecert.core.errors import BackendUnavailableError, ConfigurationError
from nodecert.core.keyrefs import KeyRef, parse_ref
from nodecert.core.keys import KeyType, PrivateKey, generate_private_key
from nodecert.core.values import (
    IssuerSet,
    RevocationReason,
    SignedCertificate,
    SigningRequest,
)
from nodecert.support.files import CounterFile

__all__ = ["LocalCA", "client_extensions"]

log = logging.getLogger("nodecert")


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

    @property
    def never_waits(self) -> bool:
        """True with the issuing key in a file; a key in AWS KMS or an HSM waits on it."""
        return self._external is None

    def __init__(
        self,
        *,
        key: PrivateKey | ExternalSigner,
        certificate: x509.Certificate,
        organization: str,
        trust_domain: str,
        directory: Path | None = None,
        chain: Sequence[x509.Certificate] | None = None,
        passphrase: str | None = None,
        home: HomeCA | None = None,
    ) -> None:
        self._revocations: Counter = MemoryCounter()
        self._crl_numbers: Counter = MemoryCounter()
        if directory is not None:
            # The revocation count need not survive a crash (a restart rebuilds the CRL
            # anyway); the CRL number must, so that it never goes back.
            self._revocations = CounterFile(directory / "revocations", durable=False)
            self._crl_numbers = CounterFile(directory / "crlnumber")
        if chain is not None and (not chain or chain[0] != certificate):
            raise ValueError("LocalCA: the chain must start with the issuing certificate")
        self._organization = organization
        self._trust_domain = trust_domain
        self._directory = directory
        self._rotation_file = None if directory is None else rotation_file(directory)
        self._root_crl: tuple[object, tuple[str, bytes] | None] | None = None
        self._passphrase = passphrase
        self._reload_lock = threading.Lock()
        self._external: ExternalSigner | None = None
        # Reaches a retired issuer's key held elsewhere (its ca.keyref), for its CRLs.
        self._key_refs: Callable[[KeyRef], ExternalSigner] | None = None
        home = home or HomeCA(tuple(chain) if chain is not None else (certificate,))
        self._state = self._state_of(key, home)

    @property
    def certificate(self) -> x509.Certificate:
        """The issuing CA certificate."""
        return self._current().chain[0]

    @property
    def root(self) -> x509.Certificate:
        """The root (the issuing certificate itself for a one-tier CA)."""
        return self._current().chain[-1]

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
        signer: ExternalSigner | None = None,
        key_refs: Callable[[KeyRef], ExternalSigner] | None = None,
    ) -> LocalCA:
        """Load the CA from ``directory``, creating a two-tier one there first if none exists.

        ``signer`` holds the issuing key outside any file (AWS KMS): a new CA's
        intermediate is made for its public key, and an existing one must match it.

        Raises:
            ConfigurationError: the key is encrypted and no (or a wrong) passphrase was
                given, or the files are unreadable or inconsistent.
        """
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locked(directory):
            if not (directory / "ca.crt").exists():
                create_two_tier(
                    directory,
                    organization=organization,
                    key_type=key_type,
                    passphrase=passphrase,
                    now=clock(),
                    issuing_key=None if signer is None else signer.public_key(),
                )
        return cls.open(
            directory,
            organization=organization,
            trust_domain=trust_domain,
            passphrase=passphrase,
            signer=signer,
            key_refs=key_refs,
        )

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        organization: str,
        trust_domain: str,
        passphrase: str | None = None,
        signer: ExternalSigner | None = None,
        key_refs: Callable[[KeyRef], ExternalSigner] | None = None,
    ) -> LocalCA:
        """Load an existing CA (two-tier, or the one-tier CA of an earlier version).

        Raises:
            ConfigurationError: no CA there, a locked or mismatched key, or a chain that
                does not hold together.
        """
        with locked(directory):
            finish(directory)  # A rotation a crash interrupted.
        key = signer if signer is not None else load_key(directory / "ca.key", passphrase)
        home = read_home(directory, key.public_key())
        ca = cls(
            key=key,
            certificate=home.chain[0],
            organization=organization,
            trust_domain=trust_domain,
            directory=directory,
            passphrase=passphrase,
            home=home,
        )
        ca._external = signer
        ca._key_refs = key_refs
        return ca

    def issue(self, request: SigningRequest) -> SignedCertificate:
        """Sign ``request`` with the fixed client (or node) profile."""
        state = self._current()
        not_after = naive_utc(request.not_after)
        if not_after > state.expires:
            # A certificate that outlives its issuer fails every chain check once the
            # issuer expires; refuse it (as Vault does by default) rather than cut it short.
            raise BackendUnavailableError(
                f"ca: the issuing CA expires at {state.expires.isoformat()}Z, before this"
                " certificate would: rotate it (nodecert ca rotate)"
            )
        public_key = request.subject_public_key()
        extensions = client_extensions(
            request, public_key, self._trust_domain, state.signer.leaf_aki
        )
        # All fields at once rather than through the builder's chained methods, which copy
        # the builder and re-check every extension at each step: a quarter of the signing
        # time. The values are ours and already checked; the times go in as the naive UTC
        # the builder's own setters would make of them. A test holds the output to the
        # chained builder's, byte for byte.
        builder = x509.CertificateBuilder(
            issuer_name=state.issuer_name,
            subject_name=request.identity.subject(self._organization),
            public_key=public_key,
            serial_number=x509.random_serial_number(),
            not_valid_before=naive_utc(request.not_before),
            not_valid_after=not_after,
            extensions=extensions,
        )
        certificate = state.signer.sign_certificate(builder)
        return SignedCertificate(certificate=certificate, chain=state.chain)

    def chain(self) -> Sequence[x509.Certificate]:
        """``GET /v1/ca``: the issuing CA first, the retiring ones, the root last."""
        return self._current().published

    def root_crl(self) -> tuple[str, bytes] | None:
        """The root's key id and its CRL from ``ca root-crl`` (``RootCRLSource``).

        Read and checked again only when the file or the CA changed (one ``stat`` per
        request otherwise): a CRL URL is fetched by every relying party.
        """
        if self._directory is None:
            return None
        stamp = (stamp_of(os.path.join(self._directory, ROOT_CRL)), self._current().stamp)
        cached = self._root_crl
        if cached is None or cached[0] != stamp:
            cached = self._root_crl = (stamp, served_root_crl(self._directory))
        return cached[1]

    def issuer_set(self) -> IssuerSet:
        """The issuing CAs in use, retiring and retired (``IssuerSource``)."""
        return self._current().issuers

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
        counter_io("the revocation count", self._revocations.advance)

    def crl_revision(self) -> int:
        """Changes with every revocation and rotation (see ``issuing.crl.CRLState``)."""
        return self._current().signer.crl_revision()

    def next_crl_number(self, *, at_least: int) -> int:
        """The next CRL number, persisted beside the CA key, above every earlier one."""
        return self._current().signer.next_crl_number(at_least=at_least)

    def sign_tbs(self, tbs: bytes) -> bytes:
        """Sign DER bytes with the CA key and the hash of :meth:`sign_crl` (a CRL's TBS)."""
        return self._current().signer.sign_tbs(tbs)

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        """Sign a CRL built by the caller with the CA key and AKI."""
        return self._current().signer.sign_crl(builder)

    def crl_signer(self, issuer: str) -> IssuerSigner | None:
        """The CRL signer of the issuing CA whose key id is ``issuer`` (lower-case hex).

        The one in use, or one retiring after a rotation; None for any other (unknown,
        or retired at once: trust stores no longer hold it).
        """
        state = self._current()
        if issuer == key_id(state.chain[0]):
            return state.signer
        known = {key_id(c): c for c in state.issuers.intermediates}
        if self._directory is None or issuer not in known:
            return None
        with self._reload_lock:
            signer = state.retiring.get(issuer)
            if signer is None:
                entry = self._directory / RETIRED / issuer
                try:
                    key = self._retired_key(entry)
                except ConfigurationError as exc:
                    log.warning("local CA: no CRL for issuer %s: %s", issuer, exc.detail)
                    return None
                signer = IssuerSigner(
                    key,
                    known[issuer],
                    revocations=self._revocations,
                    crl_numbers=CounterFile(entry / "crlnumber"),
                    stamp=state.stamp,
                )
                state.retiring[issuer] = signer
            return signer

    def _retired_key(self, entry: Path) -> PrivateKey | ExternalSigner:
        reference = entry / KEYREF
        if not reference.exists():
            return load_key(entry / "ca.key", self._passphrase)
        if self._key_refs is None:
            raise ConfigurationError("its key is held elsewhere and nothing here reaches it")
        try:
            named = reference.read_text().strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {reference}") from exc
        return self._key_refs(parse_ref(named))

    def _current(self) -> _State:
        # One system call per call (unchanged()): a rotation by another process takes
        # effect on the next request of every worker.
        state = self._state
        if self._rotation_file is None or unchanged(self._rotation_file, state.stamp):
            return state
        assert self._directory is not None
        with self._reload_lock:
            if stamp_of(self._rotation_file) == self._state.stamp:
                return self._state
            try:
                key = self._external or load_key(self._directory / "ca.key", self._passphrase)
                home = read_home(self._directory, key.public_key())
                self._state = self._state_of(key, home)
            except ConfigurationError as exc:
                # Files in the middle of being replaced by hand: keep the state loaded.
                log.warning("local CA: cannot reload after a rotation: %s", exc.detail)
            return self._state

    def _state_of(self, key: PrivateKey | ExternalSigner, home: HomeCA) -> _State:
        signer = IssuerSigner(
            key,
            home.chain[0],
            revocations=self._revocations,
            crl_numbers=self._crl_numbers,
            stamp=home.stamp,
        )
        return _State(
            signer=signer,
            chain=home.chain,
            published=home.published(),
            issuers=home.issuer_set(),
            expires=naive_utc(home.chain[0].not_valid_after_utc),
            stamp=home.stamp,
            issuer_name=home.chain[0].subject,
        )


@dataclass(frozen=True, slots=True)
class _State:
    """The issuing CA as loaded, replaced whole (one assignment) by a rotation."""

    signer: IssuerSigner
    chain: tuple[x509.Certificate, ...]
    published: tuple[x509.Certificate, ...]
    issuers: IssuerSet
    expires: datetime
    stamp: object
    # The issuing CA's subject: parsed from its certificate once, not on every issuance.
    issuer_name: x509.Name
    # CRL signers of retiring issuers, loaded on their first CRL.
    retiring: dict[str, IssuerSigner] = field(default_factory=dict)
