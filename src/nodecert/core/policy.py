"""Issuance policy: how long certificates live and who may have one for which node."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from nodecert.core.errors import AuthorizationError, ConfigurationError, InvalidRequestError
from nodecert.core.ports import NodeDirectory
from nodecert.core.values import Principal

__all__ = ["OwnershipMode", "OwnershipPolicy", "ValidityPolicy", "require_admin"]


@dataclass(frozen=True, slots=True)
class ValidityPolicy:
    """Certificate lifetime: ``default_days`` unless the request asks for up to ``max_days``.

    The default of 7 days fits ACM Private CA's short-lived certificate mode.
    """

    default_days: int = 7
    max_days: int = 30

    def __post_init__(self) -> None:
        if not 1 <= self.default_days <= self.max_days:
            raise ConfigurationError(
                f"validity: default {self.default_days} days must be between 1 and the"
                f" maximum {self.max_days} days"
            )

    def lifetime(self, requested_days: object | None) -> timedelta:
        """The lifetime for a request's ``validityDays`` (None means the default).

        Raises:
            InvalidRequestError: for a non-integer, a value under 1 or over the maximum.
        """
        if requested_days is None:
            return timedelta(days=self.default_days)
        if isinstance(requested_days, bool) or not isinstance(requested_days, int):
            raise InvalidRequestError("validityDays: must be a whole number of days")
        if not 1 <= requested_days <= self.max_days:
            raise InvalidRequestError(
                f"validityDays: {requested_days} is outside 1..{self.max_days}"
            )
        return timedelta(days=requested_days)


class OwnershipMode(enum.StrEnum):
    """How nodecert decides that a node belongs to a user."""

    REGISTRY = "registry"
    CLAIMS = "claims"
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class OwnershipPolicy:
    """Decides whether ``principal`` may get a certificate for ``node_id``.

    - ``registry`` (default): the node directory names the principal as the owner;
    - ``claims``: the token's ``claim`` (a list, or a space/comma separated string) names
      the node;
    - ``open``: any authenticated user, any node (explicit opt-in, for demos only).
    """

    mode: OwnershipMode
    nodes: NodeDirectory
    claim: str = "custom:nodes"

    def check(self, principal: Principal, node_id: str, *, renewal: bool = False) -> None:
        """Raise unless ``principal`` owns ``node_id``.

        A ``renewal`` (the caller proved possession of a valid, unrevoked certificate for
        the node) passes in the ``claims`` and ``open`` modes: there is no token to read
        claims from, and ownership was checked when the first certificate was issued. In
        ``registry`` mode the directory is checked again, so a transfer stops renewals.

        Raises:
            AuthorizationError: not their node, or no such node. The message is the same
                in both cases so that callers cannot probe which node ids exist.
        """
        allowed: Callable[[Principal, str], bool] = {
            OwnershipMode.REGISTRY: self._registry,
            OwnershipMode.CLAIMS: self._claims,
            OwnershipMode.OPEN: lambda _p, _n: True,
        }[self.mode]
        if renewal and self.mode is not OwnershipMode.REGISTRY:
            return
        if not allowed(principal, node_id):
            raise AuthorizationError(f"nodeId: {node_id!r} is not one of your nodes")

    def _registry(self, principal: Principal, node_id: str) -> bool:
        return self.nodes.owner_of(node_id) == principal.user_id

    def _claims(self, principal: Principal, node_id: str) -> bool:
        value = principal.claims.get(self.claim)
        if isinstance(value, str):
            names = value.replace(",", " ").strip("[]").split()
        elif isinstance(value, list):
            names = [v for v in value if isinstance(v, str)]
        else:
            names = []
        return node_id in names


def require_admin(principal: Principal) -> None:
    """Raise unless ``principal`` is in the admin group.

    Raises:
        AuthorizationError: the caller is not an admin.
    """
    if not principal.is_admin:
        raise AuthorizationError("this operation needs the admin group")
