"""The values that cross the ports: who calls, what is signed, what the ledger keeps.

Frozen dataclasses and ``StrEnum``s only (and :class:`Commit`, a ledger write on its way
to disk); the interfaces they cross are in :mod:`nodecert.core.ports`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nodecert.core.identity import Identity
from nodecert.core.keys import PublicKey

__all__ = [
    "AuditEntry",
    "CertificateQuery",
    "CertificateRecord",
    "CertificateStatus",
    "Commit",
    "IssuerSet",
    "NodeRecord",
    "PendingRevocation",
    "Principal",
    "Profile",
    "RevocationReason",
    "SignedCertificate",
    "SigningRequest",
]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        user_id: The user's id: the token's subject (``sub`` unless configured), mapped
            to an id by :func:`~nodecert.core.identity.user_id_for_subject`.
        groups: Group (or role) memberships (``cognito:groups`` unless configured).
        is_admin: Whether the caller is in the configured admin group.
        claims: The verified claims, for the ``claims`` ownership policy.
        subject: The provider's subject the id was made from, as the token said it
            (None when the caller was not named by a token).
    """

    user_id: str
    groups: frozenset[str] = frozenset()
    is_admin: bool = False
    claims: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    subject: str | None = field(default=None, compare=False, hash=False)


class Profile(enum.StrEnum):
    """Certificate profiles: ``client`` for users, ``node`` (server+client) for admins."""

    CLIENT = "client"
    NODE = "node"


class RevocationReason(enum.StrEnum):
    """RFC 5280 CRL reason codes that a caller may give."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"


class CertificateStatus(enum.StrEnum):
    """Ledger status. ``expired`` is derived from ``not_after`` when listing.

    ``superseded``: renewed once (its successor's serial is ``superseded_by``); still
    valid until it expires, but it cannot renew again and does not count toward the
    per-node cap. Past its ``not_after`` it lists as ``expired``, like an active row.
    """

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"

    @property
    def is_live(self) -> bool:
        """Whether a row in this status is usable until its ``not_after`` (not revoked)."""
        return self in (CertificateStatus.ACTIVE, CertificateStatus.SUPERSEDED)


@dataclass(frozen=True, slots=True)
class SigningRequest:
    """What the core asks a CA backend to sign.

    The backend must put ``identity`` (not whatever the CSR's subject says) into the
    certificate, with the ``profile``'s extensions and exactly this validity window.

    ``csr`` is None only for a backend whose ``builds_in_process`` is true (see
    :class:`CABackend`): such a backend needs nothing but ``public_key``.
    """

    csr: x509.CertificateSigningRequest | None
    identity: Identity
    not_before: datetime
    not_after: datetime
    request_id: str
    profile: Profile = Profile.CLIENT
    dns_names: tuple[str, ...] = ()
    public_key: PublicKey | None = None
    ip_addresses: tuple[str, ...] = ()

    def subject_public_key(self) -> PublicKey:
        """The key to certify: ``public_key``, or the CSR's."""
        if self.public_key is not None:
            return self.public_key
        if self.csr is None:
            raise TypeError("SigningRequest: needs a csr or a public_key")
        key = self.csr.public_key()
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise TypeError("SigningRequest: only RSA and EC keys reach a CA")
        return key


@dataclass(frozen=True, slots=True)
class SignedCertificate:
    """A certificate as a CA backend returns it, with the chain up to the root.

    ``issuer`` names the CA that signed when a backend has several (an ACM PCA ARN), so
    that revocation goes to that CA; None for a backend with one.
    """

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    issuer: str | None = None


@dataclass(frozen=True, slots=True)
class IssuerSet:
    """The CA certificates a relying party accepts now, a rotation's overlap included.

    Attributes:
        roots: The trust anchors.
        intermediates: Issuing CAs whose certificates are accepted: the one that issues
            now, first, then those retiring (planned rotation: until their certificates
            expire).
        retired: Issuing CAs retired at once (emergency rotation, a leaked key): their
            certificates are refused everywhere, except as the proof of a renewal, where
            the ledger tells the genuine ones from those minted with the leaked key.
        issuing: The CAs that issue now, when there may be several or one is a root (ACM
            PCA: a general-purpose and a short-lived CA; a one-tier root). Empty: the
            first of ``intermediates`` (the local CA).
    """

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    retired: tuple[x509.Certificate, ...] = ()
    issuing: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    """One ledger row. ``serial`` is lower-case hex."""

    serial: str
    user_id: str
    node_id: str
    key_type: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    request_id: str
    created_at: datetime
    status: CertificateStatus = CertificateStatus.ACTIVE
    revoked_at: datetime | None = None
    revocation_reason: RevocationReason | None = None
    profile: Profile = Profile.CLIENT
    renewed_from: str | None = None
    issuer: str | None = None
    dns_names: tuple[str, ...] = ()
    superseded_by: str | None = None
    #: The identity provider's subject of ``user_id`` (see ``user_id_for_subject``), when
    #: the row was issued to a token's subject; None for node certificates and old rows.
    user_subject: str | None = None
    #: The IP addresses of a node certificate (``--ip``), as its DNS names.
    ip_addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CertificateQuery:
    """Which ledger rows to list, newest first.

    Rows come by ``created_at`` descending, ties by ``serial`` (DynamoDB keeps rows of the
    same microsecond in its index's own order). ``status`` is the status a client sees at
    ``now``: an active or superseded row past its ``not_after`` is expired. ``after`` is
    the serial of the last row of the previous page; the rows after it in that order
    follow. ``limit`` caps the rows returned.
    """

    user_id: str | None = None
    node_id: str | None = None
    status: CertificateStatus | None = None
    now: datetime | None = None
    profile: Profile | None = None
    limit: int | None = None
    after: str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.now is None:
            raise ValueError("CertificateQuery: a status needs the time it holds at (now)")
        if self.limit is not None and self.limit < 1:
            raise ValueError("CertificateQuery: limit must be at least 1")

    def matches(self, row: CertificateRecord) -> bool:
        """Whether ``row`` passes the filters (``after`` and ``limit`` aside)."""
        if self.user_id is not None and row.user_id != self.user_id:
            return False
        if self.node_id is not None and row.node_id != self.node_id:
            return False
        if self.profile is not None and row.profile is not self.profile:
            return False
        if self.status is None or self.now is None:
            return True
        if self.status is CertificateStatus.REVOKED:
            return row.status is CertificateStatus.REVOKED
        if not row.status.is_live:
            return False
        if row.not_after <= self.now:
            return self.status is CertificateStatus.EXPIRED
        return row.status is self.status


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node directory entry."""

    node_id: str
    owner: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PendingRevocation:
    """A CA revocation that the ledger has recorded and the CA has not confirmed yet."""

    serial: str
    reason: RevocationReason
    issuer: str | None
    queued_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One administrative action, as the audit trail keeps it.

    Attributes:
        at: When it was done.
        actor: Who did it: the caller's user id, or what the CLI names (``cli:root``).
        action: What was done (``node.add``, ``node.transfer``, ``node.remove``,
            ``certificate.revoke``, ``certificates.revoke_all``).
        target: What it was done to (a node id, a serial, ``user:<id>``).
        detail: The rest, one short line (new owner, reason, how many revoked).
        user_id: The user it concerns (a certificate's or node's owner), if one.
        node_id: The node it concerns, if one.
        source: Where the request came from (``http 203.0.113.7``, ``lambda 198.51.100.2``,
            ``cli``), when known.
    """

    at: datetime
    actor: str
    action: str
    target: str
    detail: str = ""
    user_id: str = ""
    node_id: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which audit entries to read: every given filter must match; newest first.

    Attributes:
        user_id: Only entries concerning this user.
        node_id: Only entries concerning this node.
        action: Only this action (``certificate.revoke``), or actions under a prefix
            ending in a dot (``node.``).
        since: Only entries at or after this time.
        until: Only entries before this time.
        limit: At most this many.
    """

    user_id: str | None = None
    node_id: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100

    def matches(self, entry: AuditEntry) -> bool:
        """Whether ``entry`` passes every filter (the reference the stores agree with)."""
        if self.user_id is not None and entry.user_id != self.user_id:
            return False
        if self.node_id is not None and entry.node_id != self.node_id:
            return False
        if self.action is not None and not (
            entry.action == self.action
            or (self.action.endswith(".") and entry.action.startswith(self.action))
        ):
            return False
        if self.since is not None and entry.at < self.since:
            return False
        return self.until is None or entry.at < self.until


class Commit:
    """A ledger write on its way to durable storage: ``wait()`` for it, or ``await`` it.

    :meth:`~nodecert.core.ports.Ledger.record` returns one. Until it completes, the row
    may not be on disk yet, so a certificate must not leave the process before; if it
    fails (with the error the write raised), the certificate must be dropped.
    """

    __slots__ = ("_future",)

    def __init__(self, future: Future[None]) -> None:
        self._future = future

    @classmethod
    def done(cls) -> Commit:
        """A commit that has already completed (a store that writes before returning)."""
        future: Future[None] = Future()
        future.set_result(None)
        return cls(future)

    @classmethod
    def failed(cls, error: BaseException) -> Commit:
        """A commit that has already failed with ``error``."""
        future: Future[None] = Future()
        future.set_exception(error)
        return cls(future)

    def when_settled(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the write succeeded or failed (at once if it has)."""
        self._future.add_done_callback(lambda _: callback())

    def wait(self, timeout: float | None = None) -> None:
        """Block until the row is durable.

        Raises:
            ConflictError: the serial is already in the ledger.
            StoreUnavailableError: the row could not be committed.
            TimeoutError: ``timeout`` seconds passed first.
        """
        self._future.result(timeout)

    def __await__(self) -> Generator[Any, None, None]:
        """Wait on the running event loop without blocking it; raises as :meth:`wait`."""
        # Imported here: only an event loop awaits, and a Lambda cold start or a node's
        # `import nodecert.verify` need not pay for asyncio.
        import asyncio

        return asyncio.wrap_future(self._future).__await__()
