"""Everything the authority does besides issuing: listings, revocation, the node directory.

:class:`Administration` and :class:`~nodecert.issuing.authority.Authority` (issuing) are two
objects over the same collaborators (the CA, the ledger, the node directory, the clock);
neither inherits from the other. Administration also needs the revocation outbox and the
audit trail.

Revocation always finishes (:mod:`nodecert.issuing.revocation`): the ledger first, with the
CA revocations queued in the same transaction, then the CA, now or from the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from nodecert.core.context import current_source
from nodecert.core.errors import (
    AuthorizationError,
    ConflictError,
    InvalidRequestError,
    NodecertError,
    NotFoundError,
)
from nodecert.core.identity import format_serial, parse_serial, validate_id
from nodecert.core.metrics import NO_METRICS, Metrics
from nodecert.core.policy import OwnershipMode, OwnershipPolicy, require_admin
from nodecert.core.ports import (
    AuditTrail,
    CABackend,
    Ledger,
    NodeDirectory,
    RevocationOutbox,
)
from nodecert.core.values import (
    AuditEntry,
    CertificateQuery,
    CertificateRecord,
    CertificateStatus,
    NodeRecord,
    Principal,
    Profile,
    RevocationReason,
)
from nodecert.issuing.revocation import count_revoked, finish_revocations, sweep, tell_ca
from nodecert.issuing.values import NodeAssignment, NodeRemoval

__all__ = ["Administration", "NodeAssignment", "NodeRemoval"]

audit_log = logging.getLogger("nodecert.audit")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Administration:
    """Listing and revoking certificates, keeping the node directory, the audit trail.

    Args:
        ca: The CA backend, told of every revocation.
        ledger: The certificate ledger.
        nodes: The node directory.
        ownership: The ownership policy (a transfer revokes only under ``registry``).
        outbox: The queue of CA revocations (SQLite, PostgreSQL and ``MemoryStore``: the
            store itself; DynamoDB: ``DynamoDBOutbox``).
        audit: Where administrative actions are recorded (the same object as ``outbox``
            for every store).
        clock: Returns the current time, timezone-aware UTC.
    """

    def __init__(
        self,
        *,
        ca: CABackend,
        ledger: Ledger,
        nodes: NodeDirectory,
        ownership: OwnershipPolicy,
        outbox: RevocationOutbox,
        audit: AuditTrail,
        clock: Callable[[], datetime] = _utcnow,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.metrics = metrics
        self.outbox = outbox
        self.audit = audit
        self.ca = ca
        self.ledger = ledger
        self.nodes = nodes
        self.ownership = ownership
        self.clock = clock

    def list_certificates(
        self,
        principal: Principal,
        *,
        node_id: object | None = None,
        status: CertificateStatus | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> list[CertificateRecord]:
        """The caller's certificates, newest first, optionally for one node, in one status.

        ``limit`` and ``after`` (the serial of the last row of the previous page) page
        through them; the store does the filtering and paging, so a page costs the same
        however many rows a user has.

        Raises:
            InvalidRequestError: a bad node id, or an ``after`` that is not one of the
                caller's certificates (of that node).
        """
        node = None if node_id is None else validate_id(node_id, field="nodeId")
        if after is not None:
            after = self._cursor_row(principal, after, node)
        now = self.clock()
        query = CertificateQuery(
            user_id=principal.user_id,
            node_id=node,
            status=status,
            now=now,
            limit=limit,
            after=after,
        )
        return [self._effective(row, now) for row in self.ledger.query(query)]

    def _cursor_row(self, principal: Principal, cursor: str, node: str | None) -> str:
        try:
            row = self.ledger.get(format_serial(parse_serial(cursor)))
        except InvalidRequestError:
            row = None
        if row is None or row.user_id != principal.user_id or node not in (None, row.node_id):
            raise InvalidRequestError(f"cursor: {cursor[:48]!r} is not in this listing")
        return row.serial

    def get_certificate(self, principal: Principal, serial: str) -> CertificateRecord:
        """One certificate of the caller's (any certificate, for an admin).

        Raises:
            InvalidIdentifierError: the serial is not hex.
            NotFoundError: no such serial, or it is someone else's (indistinguishable).
        """
        canonical = format_serial(parse_serial(serial))
        row = self.ledger.get(canonical)
        if row is None or not (principal.is_admin or row.user_id == principal.user_id):
            raise NotFoundError(f"serial: no certificate {canonical} among yours")
        return self._effective(row, self.clock())

    def revoke(
        self,
        principal: Principal,
        serial: str,
        reason: RevocationReason,
        *,
        actor: str | None = None,
    ) -> CertificateRecord:
        """Revoke one certificate (owner or admin). Revoking twice is not an error.

        The ledger is marked first (with the CA revocation queued in the same transaction),
        so the very next authorization decision denies; the CA is told after (for ACM PCA,
        so that its CRL carries it too). A CA that cannot answer now is retried later
        (:meth:`finish_revocations`): the revocation itself has happened.

        Args:
            actor: Who to name in the audit trail (default: the caller's user id).
        """
        row = self.get_certificate(principal, serial)
        queued = self.outbox.revoke_and_queue([row.serial], reason=reason, at=self.clock())
        count_revoked(self, queued, reason)
        self._audit(
            principal,
            actor,
            "certificate.revoke",
            row.serial,
            f"reason={reason}",
            user_id=row.user_id,
            node_id=row.node_id,
        )
        tell_ca(self, queued)
        revoked = self.ledger.get(row.serial)
        if revoked is None:  # A ledger row is never deleted.
            raise NotFoundError(f"serial: no certificate {row.serial}")
        return revoked

    def revoke_all(
        self,
        principal: Principal,
        *,
        node_id: object | None = None,
        user_id: object | None = None,
        reason: RevocationReason = RevocationReason.UNSPECIFIED,
        actor: str | None = None,
    ) -> list[CertificateRecord]:
        """Revoke every live certificate of a node (its owner or an admin) or of a user
        (that user or an admin). Give exactly one of ``node_id`` and ``user_id``.

        Repeating it is harmless, and finishes what a failed call left: rows already
        revoked are skipped, CA revocations still queued are sent.

        Returns:
            The rows revoked by this call (already revoked or expired ones are skipped).

        Raises:
            InvalidRequestError: neither or both selectors, or a malformed id.
            AuthorizationError: the caller is neither the owner/user nor an admin.
        """
        if (node_id is None) == (user_id is None):
            raise InvalidRequestError("revoke-all: name exactly one of a node or a user")
        if node_id is not None:
            node = validate_id(node_id, field="nodeId")
            if not principal.is_admin and self.nodes.owner_of(node) != principal.user_id:
                raise AuthorizationError(f"nodeId: {node!r} is not one of your nodes")
            rows, target = self.ledger.find(node_id=node), node
        else:
            user = validate_id(user_id, field="userId")
            if not principal.is_admin and user != principal.user_id:
                raise AuthorizationError("userId: you may only revoke your own certificates")
            rows, target = self.ledger.find(user_id=user), f"user:{user}"
        revoked = sweep(self, rows, reason)
        detail = f"reason={reason} revoked={len(revoked)}"
        self._audit(
            principal,
            actor,
            "certificates.revoke_all",
            target,
            detail,
            user_id="" if node_id is not None else target.removeprefix("user:"),
            node_id=target if node_id is not None else "",
        )
        return revoked

    def put_node(
        self,
        principal: Principal,
        node_id: object,
        owner: object,
        *,
        transfer: bool = True,
        actor: str | None = None,
    ) -> NodeAssignment:
        """Create a node or transfer it (admin only).

        A transfer revokes every live certificate of the node that names another user
        (they name the old owner). The directory changes first, so no new certificate can
        be issued to the old owner, then the ledger is swept; with the ``registry`` policy
        a repeated call with the same owner sweeps again, finishing what a failed call
        left.

        Args:
            transfer: False refuses to change the owner of an existing node (the CLI's
                ``nodes add`` without ``--transfer``).
            actor: Who to name in the audit trail (default: the caller's user id).

        Raises:
            ConflictError: the node has another owner and ``transfer`` is False.
        """
        require_admin(principal)
        node = validate_id(node_id, field="nodeId")
        new_owner = validate_id(owner, field="owner")
        previous = self.nodes.owner_of(node)
        changes_owner = previous is not None and previous != new_owner
        if changes_owner and not transfer:
            raise ConflictError(
                f"nodeId: {node!r} belongs to {previous!r}; giving it to {new_owner!r} is a"
                " transfer, which revokes its certificates: ask for the transfer explicitly"
            )
        record = self.nodes.put_node(node, new_owner, at=self.clock())
        revoked: list[CertificateRecord] = []
        if changes_owner or (
            previous is not None and self.ownership.mode is OwnershipMode.REGISTRY
        ):
            stale = [row for row in self.ledger.find(node_id=node) if row.user_id != new_owner]
            revoked = sweep(self, stale, RevocationReason.AFFILIATION_CHANGED)
        action = "node.transfer" if changes_owner else "node.add"
        detail = f"owner={new_owner} previous={previous or '-'} revoked={len(revoked)}"
        self._audit(principal, actor, action, node, detail, user_id=new_owner, node_id=node)
        return NodeAssignment(
            record=record,
            previous_owner=previous,
            revoked=len(revoked),
            node_certificates=_node_certificates(revoked),
        )

    def get_node(self, principal: Principal, node_id: object) -> NodeRecord:
        """One node directory entry (admin only)."""
        require_admin(principal)
        node = validate_id(node_id, field="nodeId")
        for record in self.nodes.list_nodes():
            if record.node_id == node:
                return record
        raise NotFoundError(f"nodeId: no node {node!r}")

    def delete_node(
        self, principal: Principal, node_id: object, *, actor: str | None = None
    ) -> int:
        """Remove a node (admin only) and revoke all its certificates; return how many.

        See :meth:`remove_node`, which also names the node's own certificates revoked.
        """
        return self.remove_node(principal, node_id, actor=actor).revoked

    def remove_node(
        self, principal: Principal, node_id: object, *, actor: str | None = None
    ) -> NodeRemoval:
        """Remove a node (admin only) and revoke all its certificates.

        Repeating it sweeps again: when a node is already gone, what a failed call left
        (live certificates, queued CA revocations) is finished; only when there was
        nothing left to do is it a 404.

        Raises:
            NotFoundError: no such node, and nothing left to revoke.
        """
        require_admin(principal)
        node = validate_id(node_id, field="nodeId")
        owner = self.nodes.owner_of(node) or ""
        existed = self.nodes.delete_node(node)
        revoked = sweep(
            self, self.ledger.find(node_id=node), RevocationReason.CESSATION_OF_OPERATION
        )
        if not existed and not revoked:
            raise NotFoundError(f"nodeId: no node {node!r}")
        detail = f"revoked={len(revoked)}"
        self._audit(principal, actor, "node.remove", node, detail, user_id=owner, node_id=node)
        return NodeRemoval(
            node_id=node, revoked=len(revoked), node_certificates=_node_certificates(revoked)
        )

    def list_nodes(self, principal: Principal) -> list[NodeRecord]:
        """All nodes for an admin; the caller's own nodes otherwise."""
        return self.nodes.list_nodes(owner=None if principal.is_admin else principal.user_id)

    def finish_revocations(self, *, limit: int = 100, failed: set[str] | None = None) -> int:
        """Tell the CA about up to ``limit`` queued revocations; return how many are left.

        See :func:`nodecert.issuing.revocation.finish_revocations`.

        Raises:
            StoreUnavailableError: the queue cannot be read or updated now.
        """
        return finish_revocations(self, limit=limit, failed=failed)

    def _audit(
        self,
        principal: Principal,
        actor: str | None,
        action: str,
        target: str,
        detail: str,
        *,
        user_id: str = "",
        node_id: str = "",
    ) -> None:
        entry = AuditEntry(
            at=self.clock(),
            actor=actor or principal.user_id,
            action=action,
            target=target,
            detail=detail,
            user_id=user_id,
            node_id=node_id,
            source=current_source(),
        )
        audit_log.info("audit actor=%s action=%s target=%s %s", entry.actor, action, target, detail)
        try:
            self.audit.append_audit(entry)
        except NodecertError as exc:
            # Done is done: the log line above is the record of last resort.
            audit_log.error("audit: entry not stored (%s)", exc.detail)

    @staticmethod
    def _effective(row: CertificateRecord, now: datetime) -> CertificateRecord:
        if row.status.is_live and row.not_after <= now:
            return replace(row, status=CertificateStatus.EXPIRED)
        return row


def _node_certificates(rows: list[CertificateRecord]) -> tuple[CertificateRecord, ...]:
    return tuple(row for row in rows if row.profile is Profile.NODE)
