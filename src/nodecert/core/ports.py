"""The small interfaces (ports) the core talks to. The values that cross them are in
:mod:`nodecert.core.values`.

Adapters implement these: ``backends/`` the :class:`CABackend`, ``store/`` the
:class:`Ledger`, :class:`NodeDirectory`, :class:`RevocationOutbox` and :class:`AuditTrail`,
``verifiers/`` the :class:`TokenVerifier`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from cryptography import x509

from nodecert.core.values import (
    AuditEntry,
    AuditQuery,
    CertificateQuery,
    CertificateRecord,
    Commit,
    IssuerSet,
    NodeRecord,
    PendingRevocation,
    Principal,
    RevocationReason,
    SignedCertificate,
    SigningRequest,
)

__all__ = [
    "AuditTrail",
    "CABackend",
    "CRLSigner",
    "IssuerSource",
    "Ledger",
    "LedgerReader",
    "NodeDirectory",
    "RateLimiter",
    "ReplayGuard",
    "RevocationOutbox",
    "TokenVerifier",
]


class CABackend(Protocol):
    """A certificate authority that signs, names its chain and revokes.

    ``builds_in_process`` is true for a backend that builds the certificate itself, in this
    process, from the request's identity and public key (the local CA): the authority then
    skips making a CSR for server-side keys and skips re-reading the identity out of the
    certificate it gets back. Other backends (ACM PCA) always get a CSR, and their
    certificates are always checked.

    ``never_waits`` is true for a backend whose ``issue`` never waits on another machine or
    process (the local CA with its key in a file): issuance may then run on the event loop.
    A key in AWS KMS or an HSM, or ACM PCA, waits: such issuance goes to the thread pool.
    """

    builds_in_process: bool

    @property
    def never_waits(self) -> bool:
        """Whether ``issue`` never waits on another machine or process."""
        ...

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


class LedgerReader(Protocol):
    """Reading the record of every certificate issued.

    ``find`` is ``query`` without filters; ``query`` filters, orders and pages in the
    store itself, so a page costs the same however many rows there are.
    """

    def get(self, serial: str) -> CertificateRecord | None:
        """The row for ``serial``, or None."""
        ...

    def find(
        self, *, user_id: str | None = None, node_id: str | None = None
    ) -> list[CertificateRecord]:
        """Rows for a user and/or a node, newest first."""
        ...

    def query(self, query: CertificateQuery) -> list[CertificateRecord]:
        """The rows ``query`` asks for, newest first (see ``CertificateQuery``)."""
        ...


class Ledger(LedgerReader, Protocol):
    """The record of every certificate issued: reading it, and writing to it.

    ``never_waits`` is true for a ledger whose ``record`` hands the row over without waiting
    on another machine (SQLite's committer thread, memory): issuance may then run on the
    event loop. A database server or DynamoDB waits on the network.
    """

    @property
    def never_waits(self) -> bool:
        """Whether ``record`` never waits on another machine."""
        ...

    def record(self, record: CertificateRecord) -> Commit:
        """Write a new row; it is durable once the returned :class:`Commit` completes.

        A store may commit at once (and raise at once) or hand the row to a group commit
        that shares one transaction among concurrent callers (SQLite);
        ``record(row).wait()`` is the same either way.

        Raises:
            ConflictError: the serial exists (at once, or from the commit).
            StoreUnavailableError: the store cannot answer now (likewise).
        """
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

    def audit_entries(
        self, *, limit: int = 100, query: AuditQuery | None = None
    ) -> list[AuditEntry]:
        """The most recent entries that ``query`` selects (at most its limit, else
        ``limit``), newest first."""
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


class ReplayGuard(Protocol):
    """Remembers single-use token ids (``jti``) across workers; every store implements it.

    It lets ``POST /v1/renew`` refuse a replayed proof-of-possession
    token even when the replay reaches another worker or another Lambda instance, and holds
    the claims of ``Idempotency-Key`` values (see :mod:`nodecert.issuing.idempotency`).
    """

    def use_once(self, key: str, *, expires_at: datetime) -> None:
        """Record ``key`` as used until ``expires_at``.

        Raises:
            ConflictError: ``key`` was already used (and has not expired yet).
            StoreUnavailableError: the store cannot answer now.
        """
        ...

    def release(self, key: str, *, expires_at: datetime) -> None:
        """Forget ``key`` if it is still recorded until exactly ``expires_at``.

        Undoes the caller's own :meth:`use_once` (an ``Idempotency-Key`` whose request
        failed before the CA accepted anything); a record made by anyone else, with
        another expiry, is left alone. Nothing recorded is not an error.

        Raises:
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


@runtime_checkable
class IssuerSource(Protocol):
    """Optional CA ability: the issuing CAs in use, retiring and retired (rotation).

    The local CA has it; a backend without it has the fixed chain of ``chain()``.
    """

    def issuer_set(self) -> IssuerSet:
        """The current :class:`IssuerSet`; the same object until the next rotation."""
        ...


class RateLimiter(Protocol):
    """Keeps token buckets atomically, shared by every worker (the issuance rate).

    Every store implements it (DynamoDB through ``DynamoDBLimits``).
    """

    def take_token(self, key: str, *, capacity: float, refill_per_s: float, now: datetime) -> float:
        """Take one token from bucket ``key``.

        Returns:
            0.0 when a token was taken, else the seconds until one will be available.
        """
        ...
