"""The small interfaces (ports) the core talks to, and the values that cross them.

Adapters implement these: ``backends/`` the :class:`CABackend`, ``store/`` the
:class:`Ledger` and :class:`NodeDirectory`, ``verifiers/`` the :class:`TokenVerifier`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nodecert.core.identity import Identity
from nodecert.core.keys import PublicKey

__all__ = [
    "AuditEntry",
    "AuditTrail",
    "CABackend",
    "CRLSigner",
    "CertificateQuery",
    "CertificateRecord",
    "CertificateStatus",
    "DeferredLedger",
    "Ledger",
    "LedgerQueries",
    "NodeDirectory",
    "NodeRecord",
    "PendingRevocation",
    "Principal",
    "Profile",
    "ReplayGuard",
    "RevocationOutbox",
    "RevocationReason",
    "SignedCertificate",
    "SigningRequest",
    "TokenVerifier",
    "query_ledger",
    "query_rows",
]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        user_id: The token's ``sub``, already validated as an id.
        groups: Group memberships (``cognito:groups``).
        is_admin: Whether the caller is in the configured admin group.
        claims: The verified claims, for the ``claims`` ownership policy.
    """

    user_id: str
    groups: frozenset[str] = frozenset()
    is_admin: bool = False
    claims: dict[str, object] = field(default_factory=dict, compare=False, hash=False)


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


class CABackend(Protocol):
    """A certificate authority that signs, names its chain and revokes.

    A backend may set a class attribute ``builds_in_process = True`` when it builds the
    certificate itself, in this process, from the request's identity and public key (the
    local CA): the authority then skips making a CSR for server-side keys and skips
    re-reading the identity out of the certificate it gets back. Other backends (ACM PCA)
    always get a CSR, and their certificates are always checked.
    """

    def issue(self, request: SigningRequest) -> SignedCertificate:
        """Sign ``request``.

        Raises:
            BackendUnavailableError: the CA cannot answer now (nothing was issued, or the
                issued certificate cannot be retrieved in time).
        """
        ...

    def chain(self) -> Sequence[x509.Certificate]:
        """The CA certificates, issuing CA first, up to and including the root."""
        ...

    def revoke(
        self, certificate_serial: int, reason: RevocationReason, *, issuer: str | None = None
    ) -> None:
        """Tell the CA a certificate is revoked; already revoked is not an error.

        ``issuer`` is what ``SignedCertificate.issuer`` said when it was issued (None for
        rows recorded before it was kept).
        """
        ...


class Ledger(Protocol):
    """The record of every certificate issued."""

    def record(self, record: CertificateRecord) -> None:
        """Commit a new row; raises ``ConflictError`` if the serial exists."""
        ...

    def get(self, serial: str) -> CertificateRecord | None:
        """The row for ``serial``, or None."""
        ...

    def find(
        self, *, user_id: str | None = None, node_id: str | None = None
    ) -> list[CertificateRecord]:
        """Rows for a user and/or a node, newest first."""
        ...

    def mark_revoked(
        self, serial: str, *, reason: RevocationReason, at: datetime
    ) -> CertificateRecord:
        """Mark ``serial`` revoked (idempotent) and return the row as it now is."""
        ...

    def record_successor(self, record: CertificateRecord) -> None:
        """Commit ``record`` and mark its predecessor (``record.renewed_from``) superseded.

        Both or neither, atomically: the predecessor must still be active, so of two
        renewals of one certificate racing, exactly one commits.

        Raises:
            ConflictError: the predecessor is not active any more (superseded, revoked or
                missing), or the serial exists; nothing was written.
            StoreUnavailableError: the store cannot answer now.
        """
        ...


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
    """

    at: datetime
    actor: str
    action: str
    target: str
    detail: str = ""


class RevocationOutbox(Protocol):
    """Revocations that always finish: the ledger first, then the CA through a queue.

    Every store implements it. ``revoke_and_queue`` marks rows revoked and queues one CA
    revocation per row in the same transaction (DynamoDB: one transaction per row), so a
    CA outage never leaves a row active that should be revoked, and a queued revocation
    is never lost.
    """

    def revoke_and_queue(
        self, serials: Sequence[str], *, reason: RevocationReason, at: datetime
    ) -> list[CertificateRecord]:
        """Revoke the rows of ``serials`` that are still live; queue their CA revocations.

        Returns:
            The rows this call revoked (already revoked rows are skipped).
        """
        ...

    def pending_revocations(self, *, limit: int) -> list[PendingRevocation]:
        """Up to ``limit`` queued CA revocations, oldest first."""
        ...

    def revocation_sent(self, serial: str) -> None:
        """Take ``serial`` off the queue: the CA has it."""
        ...

    def count_pending_revocations(self) -> int:
        """How many CA revocations are queued."""
        ...


class AuditTrail(Protocol):
    """Where administrative actions are recorded, with who did them."""

    def append_audit(self, entry: AuditEntry) -> None:
        """Record ``entry`` (committed before this returns)."""
        ...

    def audit_entries(self, *, limit: int = 100) -> list[AuditEntry]:
        """The ``limit`` most recent entries, newest first."""
        ...


@runtime_checkable
class LedgerQueries(Protocol):
    """Optional ability of a ``Ledger``: filter, order and page rows in the store itself.

    Without it, :func:`query_ledger` reads the user's (or node's) rows whole and does the
    same in memory.
    """

    def query(self, query: CertificateQuery) -> list[CertificateRecord]:
        """The rows ``query`` asks for, newest first."""
        ...


def query_ledger(ledger: Ledger, query: CertificateQuery) -> list[CertificateRecord]:
    """Run ``query`` on ``ledger``: in the store when it can (``LedgerQueries``)."""
    if isinstance(ledger, LedgerQueries):
        return ledger.query(query)
    return query_rows(ledger.find(user_id=query.user_id, node_id=query.node_id), query)


def query_rows(
    rows: Iterable[CertificateRecord], query: CertificateQuery
) -> list[CertificateRecord]:
    """Run ``query`` over ``rows`` in memory: the reference for every ``LedgerQueries``."""
    rows = sorted(rows, key=lambda row: (row.created_at, row.serial), reverse=True)
    if query.after is not None:
        positions = [i for i, row in enumerate(rows) if row.serial == query.after]
        rows = rows[positions[0] + 1 :] if positions else []
    matching = [row for row in rows if query.matches(row)]
    return matching if query.limit is None else matching[: query.limit]


@runtime_checkable
class DeferredLedger(Protocol):
    """Optional ability of a ``Ledger``: queue a row and learn later that it is durable.

    Lets a caller that must not block (an event loop) go on with other requests while its
    row is committed, typically together with theirs in one transaction.
    """

    def record_deferred(self, record: CertificateRecord) -> Future[None]:
        """Queue a new row; the future fails with what ``record`` would raise."""
        ...


class NodeDirectory(Protocol):
    """Which user owns which node."""

    def owner_of(self, node_id: str) -> str | None:
        """The owner of ``node_id``, or None for an unknown node."""
        ...

    def put_node(self, node_id: str, owner: str, *, at: datetime) -> NodeRecord:
        """Create ``node_id`` or re-assign it to ``owner``; return the stored record."""
        ...

    def delete_node(self, node_id: str) -> bool:
        """Remove a node; False if it did not exist."""
        ...

    def list_nodes(self, *, owner: str | None = None) -> list[NodeRecord]:
        """All nodes, or those of ``owner``."""
        ...


class TokenVerifier(Protocol):
    """Turns a bearer token into a :class:`Principal`, or raises AuthenticationError."""

    def verify(self, token: str) -> Principal:
        """Verify ``token`` (signature, issuer, audience, times) and return the caller."""
        ...


@runtime_checkable
class ReplayGuard(Protocol):
    """Optional store ability: remember single-use token ids (``jti``) across workers.

    A store that implements it lets ``POST /v1/renew`` refuse a replayed proof-of-possession
    token even when the replay reaches another worker or another Lambda instance.
    """

    def use_once(self, key: str, *, expires_at: datetime) -> None:
        """Record ``key`` as used until ``expires_at``.

        Raises:
            ConflictError: ``key`` was already used (and has not expired yet).
            StoreUnavailableError: the store cannot answer now.
        """
        ...


@runtime_checkable
class CRLSigner(Protocol):
    """Optional CA ability: sign a CRL that nodecert builds (the local CA has it)."""

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        """Set the issuer and AKI, sign ``builder`` with the CA key and return the CRL."""
        ...
