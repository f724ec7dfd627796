"""Callers that API Gateway already verified: its authorizer's claims, mapped to a Principal.

An API Gateway Cognito (REST API) or JWT (HTTP API) authorizer checks the token before the
Lambda runs and hands its claims over in ``requestContext``, which only API Gateway can set:

- REST API with a Cognito authorizer: ``requestContext.authorizer.claims``, every value a
  string and ``cognito:groups`` comma-joined (``"a,b"``);
- HTTP API with a JWT authorizer: ``requestContext.authorizer.jwt.claims``, lists
  flattened to ``"[a b]"``.

So nothing is verified again here: the claims are read with the same rules as a token's
(the user id from the configured claim, ``sub`` by default, mapped to an id by
:func:`~nodecert.core.identity.user_id_for_subject`; admins by group).

Claim paths (``NODECERT_ADMIN_CLAIM``) name a claim exactly (``cognito:groups``, Auth0's
``https://example.com/roles``) or, when no claim has that exact name, a dotted path into
nested objects (Keycloak's ``realm_access.roles``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodecert.core.errors import AuthenticationError, NodecertError
from nodecert.core.identity import user_id_for_subject
from nodecert.core.values import Principal

__all__ = ["claim_at", "groups_of", "principal_from_claims"]

# Claim paths are settings, but a bound keeps a hostile nesting from costing anything.
_MAX_PATH_PARTS = 16


def claim_at(claims: Mapping[str, Any], path: str) -> object:
    """The value at claim ``path``: the claim of exactly that name, else a dotted path.

    ``realm_access.roles`` is ``claims["realm_access"]["roles"]`` unless a claim is named
    ``realm_access.roles`` itself; a URL-namespaced claim such as
    ``https://example.com/roles`` is found by its exact name. None when there is nothing
    there (or something that is not an object on the way).
    """
    if path in claims:
        return claims[path]
    value: object = claims
    for part in path.split(".", _MAX_PATH_PARTS):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def groups_of(claims: Mapping[str, Any], path: str | None = None) -> frozenset[str]:
    """Group (or role) names at claim ``path``; by default ``cognito:groups`` or ``groups``.

    A JSON list of strings, or one string: API Gateway hands claims over as strings (REST
    APIs comma-join lists, ``"a,b"``; HTTP APIs flatten them to ``"[a b]"``), and some
    providers send a single role as a string. Anything else holds no group.
    """
    if path is None:
        value = claims.get("cognito:groups", claims.get("groups"))
    else:
        value = claim_at(claims, path)
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    if isinstance(value, str):
        return frozenset(value.strip("[]").replace(",", " ").split())
    return frozenset()


def principal_from_claims(
    claims: Mapping[str, Any],
    *,
    admin_group: str,
    user_id_claim: str = "sub",
    admin_claim: str | None = None,
) -> Principal:
    """The caller named by verified claims (a token's, or an API Gateway authorizer's).

    Args:
        claims: The verified claims; for API Gateway ``requestContext.authorizer.claims``
            (REST) or ``.jwt.claims`` (HTTP API).
        admin_group: Members of this group (role) are admins.
        user_id_claim: The claim (path) whose value is the user's subject; the user id is
            :func:`~nodecert.core.identity.user_id_for_subject` of it.
        admin_claim: The claim path of the groups or roles; None for ``cognito:groups``,
            else ``groups``.

    Raises:
        AuthenticationError: the user id claim is missing, not a string, empty or too long.
    """
    subject = claim_at(claims, user_id_claim)
    try:
        user_id = user_id_for_subject(subject)
    except NodecertError as exc:
        shown = user_id_claim[:64]
        if subject is None:
            raise AuthenticationError(f"token: has no {shown!r} claim (the user id)") from exc
        raise AuthenticationError(f"token: {shown!r} claim: {exc.detail}") from exc
    assert isinstance(subject, str)  # user_id_for_subject accepts only strings.
    groups = groups_of(claims, admin_claim)
    return Principal(
        user_id=user_id,
        groups=groups,
        is_admin=admin_group in groups,
        claims=dict(claims),
        subject=subject,
    )
