"""Callers that API Gateway already verified: its authorizer's claims, mapped to a Principal.

An API Gateway Cognito (REST API) or JWT (HTTP API) authorizer checks the token before the
Lambda runs and hands its claims over in ``requestContext``, which only API Gateway can set:

- REST API with a Cognito authorizer: ``requestContext.authorizer.claims``, every value a
  string and ``cognito:groups`` comma-joined (``"a,b"``);
- HTTP API with a JWT authorizer: ``requestContext.authorizer.jwt.claims``, lists
  flattened to ``"[a b]"``.

So nothing is verified again here: the claims are read with the same rules as a token's
(the user id from ``sub``, checked against the id alphabet; admins by group).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodecert.core.errors import AuthenticationError, NodecertError
from nodecert.core.identity import validate_id
from nodecert.core.jose import claims_from_mapping
from nodecert.core.values import Principal

__all__ = ["groups_of", "principal_from_claims"]


def groups_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """Group names from ``cognito:groups`` (or ``groups``).

    API Gateway hands claims over as strings: REST APIs comma-join lists (``"a,b"``), HTTP
    APIs flatten them to ``"[a b]"``. Both forms, and real JSON lists, are understood.
    """
    value = claims.get("cognito:groups", claims.get("groups"))
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    if isinstance(value, str):
        return frozenset(value.strip("[]").replace(",", " ").split())
    return frozenset()


def principal_from_claims(claims: Mapping[str, Any], *, admin_group: str) -> Principal:
    """The caller named by claims an API Gateway authorizer already verified.

    Args:
        claims: ``requestContext.authorizer.claims`` (REST) or ``.jwt.claims`` (HTTP API).
        admin_group: Members of this group are admins.

    Raises:
        AuthenticationError: the claims are not an object of strings where nodecert reads
            them (``sub``, ``iss``, ``aud``, ...), or ``sub`` is missing or not a valid id.
    """
    # API Gateway sets these, but a direct invocation or a test event can hold anything:
    # typed first (the times are API Gateway's, as text in its own formats, and skipped).
    claims_from_mapping(claims, what="token", times=False)
    try:
        user_id = validate_id(claims.get("sub"), field="sub")
    except NodecertError as exc:
        raise AuthenticationError(f"token: {exc.detail}") from exc
    groups = groups_of(claims)
    return Principal(
        user_id=user_id,
        groups=groups,
        is_admin=admin_group in groups,
        claims=dict(claims),
    )
