"""One issuing CA of the local CA as a CRL signer: its key, its certificate, its counters.

The local CA signs the CRL of the issuing CA in use, and, after a rotation, those of the
retiring ones (``GET /v1/crl?issuer=<key id>``): one CRL per issuer, each signed by that
issuer's key, numbered by that issuer's counter (RFC 5280 section 5.2.3: CRL numbers
increase per issuer). Every CRL lists every revoked, unexpired certificate of the ledger;
serials are 159 random bits, so an entry naming another issuer's certificate revokes
nothing else, and a rotation never leaves a revoked certificate out of its issuer's CRL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from nodecert.backends.local.profile import encoded
from nodecert.backends.signers.external import ExternalSigner, sign_certificate, sign_crl
from nodecert.core.errors import BackendUnavailableError
from nodecert.core.keys import PrivateKey

__all__ = ["Counter", "IssuerSigner", "MemoryCounter", "counter_io"]

# A counter file that cannot be read or written (ENOSPC, EIO, EROFS) is a CA that cannot
# answer now, like a remote CA that is down: a 503 with Retry-After, and a queued revocation
# stays queued for the background drain. Only the file's role and the OS's reason are said.
_COUNTER_RETRY_AFTER_S = 10


def counter_io(what: str, call: Callable[[], int]) -> int:
    """``call()``, with an ``OSError`` of a counter file turned into a 503.

    Raises:
        BackendUnavailableError: the counter file cannot be read or written.
    """
    try:
        return call()
    except OSError as exc:
        raise BackendUnavailableError(
            f"ca: cannot read or write {what}: {exc.strerror or type(exc).__name__}",
            retry_after=_COUNTER_RETRY_AFTER_S,
        ) from exc


class Counter(Protocol):
    """A persisted (``CounterFile``) or in-memory (:class:`MemoryCounter`) counter."""

    def value(self) -> int:
        """The current value."""
        ...

    def advance(self, *, at_least: int = 0) -> int:
        """Store and return ``max(value + 1, at_least)``."""
        ...


class MemoryCounter:
    """A ``CounterFile`` for a CA that has no directory (kept in memory)."""

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def value(self) -> int:
        """The current value."""
        return self._value

    def advance(self, *, at_least: int = 0) -> int:
        """Store and return ``max(value + 1, at_least)``."""
        with self._lock:
            self._value = max(self._value + 1, at_least)
            return self._value


class IssuerSigner:
    """Signs the CRLs of one issuing CA (``CRLSigner``, ``CRLState``, ``TBSSigner``).

    Args:
        key: The issuing CA's key.
        certificate: Its certificate.
        revocations: Counts revocations (shared by every issuer of the CA).
        crl_numbers: This issuer's CRL numbers.
        stamp: Changes when the CA rotates, so that a cached CRL is rebuilt then.
    """

    def __init__(
        self,
        key: PrivateKey | ExternalSigner,
        certificate: x509.Certificate,
        *,
        revocations: Counter,
        crl_numbers: Counter,
        stamp: object = None,
    ) -> None:
        self.key = key
        self.certificate = certificate
        public_key = key.public_key()
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
        self.aki = x509.Extension(aki.oid, False, aki)
        # The AKI as the leaf certificates carry it, encoded once (profile.encoded).
        self.leaf_aki = encoded(self.aki)
        self.hash = hashes.SHA384() if _is_p384(public_key) else hashes.SHA256()
        self._revocations = revocations
        self._crl_numbers = crl_numbers
        self._stamp = stamp

    def crl_revision(self) -> int:
        """Changes with every revocation and rotation (see ``issuing.crl.CRLState``)."""
        return hash((counter_io("the revocation count", self._revocations.value), self._stamp))

    def next_crl_number(self, *, at_least: int) -> int:
        """The next CRL number of this issuer, above every earlier one."""
        return counter_io("the CRL number", lambda: self._crl_numbers.advance(at_least=at_least))

    def sign_tbs(self, tbs: bytes) -> bytes:
        """Sign DER bytes with the key and the hash of :meth:`sign_crl` (a CRL's TBS)."""
        if not isinstance(self.key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            return self.key.sign(tbs)
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(tbs, ec.ECDSA(self.hash))
        return self.key.sign(tbs, padding.PKCS1v15(), self.hash)

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        """Sign a CRL built by the caller with this issuer's name, key and AKI."""
        builder = builder.issuer_name(self.certificate.subject).add_extension(
            self.aki.value, critical=False
        )
        if not isinstance(self.key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            return sign_crl(builder, self.key)
        return builder.sign(self.key, self.hash)

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Sign a certificate built by the caller (issuer name and AKI included)."""
        if not isinstance(self.key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            return sign_certificate(builder, self.key)
        return builder.sign(self.key, self.hash)


def _is_p384(public_key: object) -> bool:
    return isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.key_size >= 384
