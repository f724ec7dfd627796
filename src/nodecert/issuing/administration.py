"""Everything the authority does besides issuing: listings, revocation, the node directory.

:class:`~nodecert.issuing.authority.Authority` inherits these operations; they live here to keep
each module small. They need only the ledger, the node directory, the CA and the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from nodecert.core.errors import AuthorizationError, InvalidRequestError, NotFoundError
from nodecert.core.identity import format_serial, parse_serial, validate_id
from nodecert.core.ports import (
    CABackend,
    CertificateQuery,
    CertificateRecord,
    CertificateStatus,
    Ledger,
    NodeDirectory,
    NodeRecord,
    Principal,
    RevocationReason,
    query_ledger,
)

__all__ = ["Administration"]


class Administration:
    """Listing and revoking certificates, and keeping the node directory."""

    ca: CABackend
    ledger: Ledger
    nodes: NodeDirectory
    clock: Callable[[], datetime]

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
        through them; the store does the filtering and paging when it can
        (``LedgerQueries``), so a page costs the same however many rows a user has.

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
        return [self._effective(row, now) for row in query_ledger(self.ledger, query)]

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
        self, principal: Principal, serial: str, reason: RevocationReason
    ) -> CertificateRecord:
        """Revoke one certificate (owner or admin). Revoking twice is not an error.

        The ledger is marked first, so the very next authorization decision denies; the CA
        is told after (for ACM PCA, so that its CRL carries it too).
        """
        row = self.get_certificate(principal, serial)
        revoked = self.ledger.mark_revoked(row.serial, reason=reason, at=self.clock())
        self.ca.revoke(parse_serial(row.serial), reason, issuer=row.issuer)
        return revoked

    def revoke_all(
        self,
        principal: Principal,
        *,
        node_id: object | None = None,
        user_id: object | None = None,
        reason: RevocationReason = RevocationReason.UNSPECIFIED,
    ) -> list[CertificateRecord]:
        """Revoke every live certificate of a node (its owner or an admin) or of a user
        (that user or an admin). Give exactly one of ``node_id`` and ``user_id``.

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
            return self._revoke_rows(self.ledger.find(node_id=node), reason)
        user = validate_id(user_id, field="userId")
        if not principal.is_admin and user != principal.user_id:
            raise AuthorizationError("userId: you may only revoke your own certificates")
        return self._revoke_rows(self.ledger.find(user_id=user), reason)

    def put_node(self, principal: Principal, node_id: object, owner: object) -> NodeRecord:
        """Create a node or transfer it (admin only).

        A transfer revokes every certificate of the node, since they name the old owner.
        """
        self._require_admin(principal)
        node = validate_id(node_id, field="nodeId")
        new_owner = validate_id(owner, field="owner")
        previous = self.nodes.owner_of(node)
        record = self.nodes.put_node(node, new_owner, at=self.clock())
        if previous is not None and previous != new_owner:
            self._revoke_node(node, RevocationReason.AFFILIATION_CHANGED)
        return record

    def get_node(self, principal: Principal, node_id: object) -> NodeRecord:
        """One node directory entry (admin only)."""
        self._require_admin(principal)
        node = validate_id(node_id, field="nodeId")
        for record in self.nodes.list_nodes():
            if record.node_id == node:
                return record
        raise NotFoundError(f"nodeId: no node {node!r}")

    def delete_node(self, principal: Principal, node_id: object) -> None:
        """Remove a node (admin only) and revoke all its certificates."""
        self._require_admin(principal)
        node = validate_id(node_id, field="nodeId")
        if not self.nodes.delete_node(node):
            raise NotFoundError(f"nodeId: no node {node!r}")
        self._revoke_node(node, RevocationReason.CESSATION_OF_OPERATION)

    def list_nodes(self, principal: Principal) -> list[NodeRecord]:
        """All nodes for an admin; the caller's own nodes otherwise."""
        return self.nodes.list_nodes(owner=None if principal.is_admin else principal.user_id)

    def _revoke_node(self, node_id: str, reason: RevocationReason) -> None:
        self._revoke_rows(self.ledger.find(node_id=node_id), reason)

    def _revoke_rows(
        self, rows: list[CertificateRecord], reason: RevocationReason
    ) -> list[CertificateRecord]:
        # The ledger first (the next access decision denies), then the CA (ACM PCA's CRL).
        now = self.clock()
        revoked = []
        for row in rows:
            if row.status is CertificateStatus.ACTIVE and row.not_after > now:
                revoked.append(self.ledger.mark_revoked(row.serial, reason=reason, at=now))
                self.ca.revoke(parse_serial(row.serial), reason, issuer=row.issuer)
        return revoked

    @staticmethod
    def _require_admin(principal: Principal) -> None:
        if not principal.is_admin:
            raise AuthorizationError("this operation needs the admin group")

    @staticmethod
    def _effective(row: CertificateRecord, now: datetime) -> CertificateRecord:
        if row.status is CertificateStatus.ACTIVE and row.not_after <= now:
            return replace(row, status=CertificateStatus.EXPIRED)
        return row
