"""The values of a node-side access decision, and the error a refusal raises.

They live in the core because both sides of the wire need them: the node side and the
service decide and raise :class:`AccessDeniedError`, and the client rebuilds it from a
``403 access_denied`` problem document (its ``reason`` member) through the wire-error table
(:mod:`nodecert.core.problems`). :mod:`nodecert.nodeside.access` makes the decision.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from nodecert.core.errors import AuthorizationError
from nodecert.core.identity import Identity

__all__ = ["AccessDeniedError", "Decision", "DenyReason"]


class DenyReason(enum.StrEnum):
    """Why a certificate was refused. The values are stable codes (logs, headers, context)."""

    NO_CERTIFICATE = "no_certificate"
    MALFORMED_CERTIFICATE = "malformed_certificate"
    INVALID_TARGET = "invalid_target"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    UNTRUSTED_ISSUER = "untrusted_issuer"
    NO_IDENTITY = "no_identity"
    WRONG_NODE = "wrong_node"
    UNKNOWN_CERTIFICATE = "unknown_certificate"
    REVOKED = "revoked"
    NODE_NOT_OWNED = "node_not_owned"
    STORE_UNAVAILABLE = "store_unavailable"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one access decision.

    Attributes:
        allowed: True only when every check passed.
        reason: Why it was denied (None when allowed).
        identity: The certificate's identity, when it could be read.
        serial: The certificate's serial (lower-case hex), when it could be read.
        detail: A public-safe sentence for logs.
    """

    allowed: bool
    reason: DenyReason | None = None
    identity: Identity | None = None
    serial: str | None = None
    detail: str = ""

    @classmethod
    def deny(
        cls,
        reason: DenyReason,
        detail: str,
        *,
        identity: Identity | None = None,
        serial: str | None = None,
    ) -> Decision:
        """A denial for ``reason``."""
        return cls(False, reason, identity, serial, detail)


class AccessDeniedError(AuthorizationError):
    """A client certificate was refused; ``decision`` says why."""

    code = "access_denied"
    title = "Access denied"

    def __init__(self, decision: Decision) -> None:
        reason = decision.reason.value if decision.reason else "denied"
        detail = decision.detail
        # "certificate: revoked", not "certificate: revoked: revoked".
        super().__init__(f"certificate: {reason}" + (f": {detail}" if detail != reason else ""))
        self.decision = decision

    def wire_fields(self) -> dict[str, str]:
        """The decision's reason as ``reason``, when it has one."""
        return {"reason": self.decision.reason.value} if self.decision.reason else {}

    @classmethod
    def from_wire(cls, detail: str, fields: Mapping[str, str], *, retry_after: int | None) -> Self:
        """Rebuilt around a denial with the document's ``reason`` (None if not one we know).

        The decision's own detail is what follows ``certificate: <reason>: `` in the
        document's, so that the rebuilt error's ``detail`` is the one the service sent.
        """
        try:
            reason: DenyReason | None = DenyReason(fields.get("reason", ""))
        except ValueError:
            reason = None
        label = reason.value if reason else "denied"
        head = f"certificate: {label}"
        if detail == head:
            said = label
        elif detail.startswith(head + ": "):
            said = detail[len(head) + 2 :]
        else:  # Not a sentence this service writes: kept whole, behind the usual head.
            said = detail
        return cls(Decision(False, reason, detail=said))
