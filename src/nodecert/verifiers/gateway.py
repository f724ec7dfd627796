"""Callers that API Gateway already verified: its authorizer's claims, mapped to a Principal.

An API Gateway Cognito (REST API) or JWT (HTTP API) authorizer checks the token before the
Lambda runs and hands its claims over in ``requestContext``, which only API Gateway can set:

- REST API with a Cognito authorizer: ``requestContext.authorizer.claims``, every value a
  string and ``cognito:groups`` comma-joined (``"a,b"``);
- HTTP API with a JWT authorizer: ``requestContext.authorizer.jwt.claims``, lists
  flattened to ``"[a b]"``.

So the signature and times are not verified again here: the claims are read with the same
rules as a token's (the user id from the configured claim, ``sub`` by default, mapped to an
id by :func:`~nodecert.core.identity.user_id_for_subject`; admins by group). The audience
is, though: a REST API's Cognito authorizer accepts a token of *any* app client of the user
pool, ID or access token alike, so :func:`check_client` holds the
claims to the configured app client(s) (``aud`` of an ID token, ``client_id`` of an access
token) and to ``token_use``, as :class:`~nodecert.verifiers.oidc.OIDCVerifier` does.

Claim paths (``NODECERT_ADMIN_CLAIM``) name a claim exactly (``cognito:groups``, Auth0's
``https://example.com/roles``) or, when no claim has that exact name, a dotted path into
nested objects (Keycloak's ``realm_access.roles``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from nodecert.core.errors import AuthenticationError, NodecertError
from nodecert.core.identity import user_id_for_subject
from nodecert.core.jose import claims_from_mapping
from nodecert.core.values import Principal

__all__ = ["check_client", "claim_at", "groups_of", "principal_from_claims"]

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
    user_id_claim: str = "sub",
    admin_claim: str | None = None,
) -> Principal:
    """The caller named by verified claims (a token's, or an API Gateway authorizer's).

    Args:
        claims: The verified claims; for API Gateway ``requestContext.authorizer.claims``
            (REST) or ``.jwt.claims`` (HTTP API).
        admin_group: Members of this group (role) are admins.
        client_ids: The app client ids a token may be issued to (see :func:`check_client`);
            None only for claims whose audience the caller has verified itself.
        user_id_claim: The claim (path) whose value is the user's subject; the user id is
            :func:`~nodecert.core.identity.user_id_for_subject` of it.
        admin_claim: The claim path of the groups or roles; None for ``cognito:groups``,
            else ``groups``.

    Raises:
        AuthenticationError: the claims are not an object of strings where nodecert reads
            them (``sub``, ``iss``, ``aud``, ...), or the user id claim is missing, not a
            string, empty or too long; the token is not for one of ``client_ids`` or has
            another ``token_use``.
    """
    # API Gateway sets these, but a direct invocation or a test event can hold anything:
    # typed first (the times are API Gateway's, as text in its own formats, and skipped).
    claims_from_mapping(claims, what="token", times=False)
    if client_ids is not None:
        check_client(claims, client_ids)
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
