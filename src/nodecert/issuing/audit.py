"""Reading the audit trail: what was issued, renewed, revoked and administered, by whom, when.

Two sources, one answer. Administrative actions and revocations are written to the audit
trail as they happen (:class:`~nodecert.issuing.administration.Administration`). Issuance
and renewal are not written twice: every certificate already has its ledger row (who, which
node, when, key type, the request id that leads to its log lines), so those entries are read
from the ledger and merged in, newest first. A user reads the entries that concern them; an
admin reads everyone's.
"""

from __future__ import annotations

from dataclasses import replace

from nodecert.core.errors import AuthorizationError
from nodecert.core.ports import AuditTrail, LedgerReader
from nodecert.core.values import (
    AuditEntry,
    AuditQuery,
    CertificateQuery,
    CertificateRecord,
    Principal,
    Profile,
)

__all__ = ["LEDGER_ACTIONS", "AuditReader"]

#: The actions read from the ledger rather than the audit trail.
LEDGER_ACTIONS = ("certificate.issue", "certificate.issue_node", "certificate.renew")
# Ledger pages read at most per question: a time window far in the past costs a bounded
# number of reads, and says so by ending early rather than by scanning every row.
_MAX_PAGES = 20


class AuditReader:
    """Answers audit questions from the audit trail and the ledger.

    Args:
        trail: Where administrative actions and revocations were recorded.
        ledger: Every issued certificate's row.
    """

    def __init__(self, trail: AuditTrail, ledger: LedgerReader) -> None:
        self.trail = trail
        self.ledger = ledger

    def read(self, principal: Principal, query: AuditQuery) -> list[AuditEntry]:
        """The entries ``query`` selects that ``principal`` may see, newest first.

        Raises:
            AuthorizationError: a user asked for another user's entries.
        """
        if not principal.is_admin:
            if query.user_id not in (None, principal.user_id):
                raise AuthorizationError("user: you may read only your own audit entries")
            query = replace(query, user_id=principal.user_id)
        stored = self.trail.audit_entries(query=query)
        issued = self._from_ledger(query) if _asks_for_ledger(query.action) else []
        merged = sorted([*stored, *issued], key=lambda e: e.at, reverse=True)
        return merged[: query.limit]

    def _from_ledger(self, query: AuditQuery) -> list[AuditEntry]:
        found: list[AuditEntry] = []
        after: str | None = None
        for _ in range(_MAX_PAGES):
            page = self.ledger.query(
                CertificateQuery(
                    user_id=query.user_id, node_id=query.node_id, limit=query.limit, after=after
                )
            )
            for row in page:
                if query.since is not None and row.created_at < query.since:
                    return found
                entry = _entry(row)
                if query.matches(entry):
                    found.append(entry)
                    if len(found) >= query.limit:
                        return found
            if len(page) < query.limit:
                return found
            after = page[-1].serial
        return found


def _asks_for_ledger(action: str | None) -> bool:
    if action is None:
        return True
    if action.endswith("."):
        return any(a.startswith(action) for a in LEDGER_ACTIONS)
    return action in LEDGER_ACTIONS


def _entry(row: CertificateRecord) -> AuditEntry:
    if row.renewed_from is not None:
        action, actor = "certificate.renew", row.user_id
        extra = f" renewed_from={row.renewed_from}"
    elif row.profile is Profile.NODE:
        # Node certificates are issued by an admin for the owner; the ledger keeps the owner.
        action, actor, extra = "certificate.issue_node", "admin", ""
    else:
        action, actor, extra = "certificate.issue", row.user_id, ""
    return AuditEntry(
        at=row.created_at,
        actor=actor,
        action=action,
        target=row.serial,
        detail=(
            f"key_type={row.key_type} not_after={row.not_after.isoformat()}"
            f" request_id={row.request_id}{extra}"
        ),
        user_id=row.user_id,
        node_id=row.node_id,
    )
