"""Callers that API Gateway already verified: its authorizer's claims, mapped to a Principal.

An API Gateway Cognito (REST API) or JWT (HTTP API) authorizer checks the token before the
Lambda runs and hands its claims over in ``requestContext``, which only API Gateway can set:

- REST API with a Cognito authorizer: ``requestContext.authorizer.claims``, every value a
  string and ``cognito:groups`` comma-joined (``"a,b"``);
- HTTP API with a JWT authorizer: ``requestContext.authorizer.jwt.claims``, lists
  flattened to ``"[a b]"``.

So the signature and times are not verified again here: the claims are read with the same
rules as a token's (the user id from ``sub``, checked against the id alphabet; admins by
group). The audience is, though: a REST API's Cognito authorizer accepts a token of *any*
app client of the user pool, ID or access token alike, so :func:`check_client` holds the
claims to the configured app client(s) (``aud`` of an ID token, ``client_id`` of an access
token) and to ``token_use``, as :class:`~nodecert.verifiers.oidc.OIDCVerifier` does.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from nodecert.core.errors import AuthenticationError, NodecertError
from nodecert.core.identity import validate_id
from nodecert.core.jose import claims_from_mapping
from nodecert.core.values import Principal

__all__ = ["check_client", "groups_of", "principal_from_claims"]


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


def check_client(claims: Mapping[str, Any], client_ids: Collection[str]) -> None:
    """Check that the token was issued to one of ``client_ids``, as ``token_use`` says.

    An ID token (``token_use`` ``id``, or none, as other OIDC providers issue) names its app
    client in ``aud``; a Cognito access token (``token_use`` ``access``) in ``client_id``.

    Raises:
        AuthenticationError: another app client, another ``token_use``, or no app client
            configured at all (nothing can be accepted then).
    """
    if not client_ids:
        raise AuthenticationError(
            "token: no app client is configured to accept (NODECERT_OIDC_AUDIENCE)"
        )
    token_use = claims.get("token_use")
    if token_use == "access":  # noqa: S105 (a claim value, not a password)
        if not _one_of(claims.get("client_id"), client_ids):
            raise AuthenticationError("token: access token for another client ('client_id')")
        return
    if token_use not in (None, "id"):
        raise AuthenticationError("token: 'token_use' must be 'id' or 'access'")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if not any(_one_of(value, client_ids) for value in audiences):
        raise AuthenticationError("token: audience ('aud') is not this service")


def _one_of(value: object, client_ids: Collection[str]) -> bool:
    return isinstance(value, str) and value in client_ids


def principal_from_claims(
    claims: Mapping[str, Any],
    *,
    admin_group: str,
    client_ids: Collection[str] | None = None,
) -> Principal:
    """The caller named by claims an API Gateway authorizer already verified.

    Args:
        claims: ``requestContext.authorizer.claims`` (REST) or ``.jwt.claims`` (HTTP API).
        admin_group: Members of this group are admins.
        client_ids: The app client ids a token may be issued to (see :func:`check_client`);
            None only for claims whose audience the caller has verified itself.

    Raises:
        AuthenticationError: the claims are not an object of strings where nodecert reads
            them (``sub``, ``iss``, ``aud``, ...), or ``sub`` is missing or not a valid id;
            the token is not for one of ``client_ids`` or has another ``token_use``.
    """
    # API Gateway sets these, but a direct invocation or a test event can hold anything:
    # typed first (the times are API Gateway's, as text in its own formats, and skipped).
    claims_from_mapping(claims, what="token", times=False)
    if client_ids is not None:
        check_client(claims, client_ids)
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
