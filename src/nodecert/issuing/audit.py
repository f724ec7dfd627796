"""Reading the audit trail: who may see which entries, and the filters.

Admins read all of it; a user reads the entries about their own nodes and about themselves
(target ``user:<id>``). The trail is searched newest first, over the newest
:data:`AUDIT_SCAN` entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nodecert.core.errors import InvalidRequestError
from nodecert.core.ports import AuditTrail, NodeDirectory
from nodecert.core.values import AuditEntry, Principal

__all__ = ["AUDIT_SCAN", "AuditQuery", "search_audit"]

AUDIT_SCAN = 10_000
"""How many of the newest audit entries :func:`search_audit` looks at."""

_MAX_FILTER = 256


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which audit entries to return, newest first; each filter matches exactly.

    Raises:
        InvalidRequestError: a filter longer than 256 characters, or ``limit`` outside
            1-1000.
    """

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        for name in ("actor", "action", "target"):
            value = getattr(self, name)
            if value is not None and not 0 < len(value) <= _MAX_FILTER:
                raise InvalidRequestError(f"{name}: 1 to {_MAX_FILTER} characters")
        if not 1 <= self.limit <= 1000:
            raise InvalidRequestError("limit: must be from 1 to 1000")
        if self.since is not None and self.since.tzinfo is None:
            raise InvalidRequestError("since: needs a time zone (end it with Z)")

    def matches(self, entry: AuditEntry) -> bool:
        """Whether ``entry`` passes the filters (``since`` included)."""
        return (
            (self.actor is None or entry.actor == self.actor)
            and (self.action is None or entry.action == self.action)
            and (self.target is None or entry.target == self.target)
            and (self.since is None or entry.at >= self.since)
        )


def search_audit(
    trail: AuditTrail, nodes: NodeDirectory, principal: Principal, query: AuditQuery
) -> list[AuditEntry]:
    """The entries ``principal`` may read that ``query`` selects, newest first."""
    own: set[str] | None = None
    if not principal.is_admin:
        own = {record.node_id for record in nodes.list_nodes(owner=principal.user_id)}
        own.add(f"user:{principal.user_id}")
    found: list[AuditEntry] = []
    for entry in trail.audit_entries(limit=AUDIT_SCAN):
        if query.since is not None and entry.at < query.since:
            break  # Newest first: every entry after this one is older still.
        if (own is None or entry.target in own) and query.matches(entry):
            found.append(entry)
            if len(found) == query.limit:
                break
    return found
