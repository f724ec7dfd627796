"""Tokens shaped as the providers document them, through the configured claims.

Each case is a token the provider's documentation shows (claims trimmed to those nodecert
reads, values as in the documented examples), signed with a test key, and the settings
docs/configuration.md gives for that provider. The user id and the admin role must come out
as documented; the same claims without the admin role must not make an admin.
"""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.core.errors import AuthenticationError
from nodecert.core.identity import user_id_for_subject
from nodecert.verifiers.gateway import claim_at, groups_of, principal_from_claims
from nodecert.verifiers.oidc import OIDCVerifier, StaticJWKS

NOW = 1_700_000_000
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "provider-key"
JWKS = {"keys": [{**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key())), "kid": KID}]}
TIMES = {"iat": NOW - 60, "exp": NOW + 3600}

COGNITO_ISS = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_example"
KEYCLOAK_ISS = "http://localhost:8080/realms/myrealm"
AUTH0_ISS = "https://my-tenant.us.auth0.com/"
OKTA_ISS = "https://dev-123456.okta.com/oauth2/default"
ENTRA_ISS = "https://login.microsoftonline.com/9122040d-6c67-4c5b-b112-36a304b66dad/v2.0"
ENTRA_CLIENT = "6e74172b-be56-4843-9ff4-e66a39bb12e3"


# (name, claims, verifier settings, expected subject, admin role to add, where to add it)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (
        "cognito-id",
        {
            "iss": COGNITO_ISS,
            "aud": "xxxxxxxxxxxxexample",
            "sub": "aaaaaaaa-bbbb-cccc-dddd-example",
            "token_use": "id",
            "cognito:username": "alice",
            "cognito:groups": ["nodecert-admins"],
            "email": "alice@example.com",
        },
        {"issuer": COGNITO_ISS, "audience": "xxxxxxxxxxxxexample"},
        "aaaaaaaa-bbbb-cccc-dddd-example",
    ),
    (
        "cognito-access",
        {
            "iss": COGNITO_ISS,
            "client_id": "xxxxxxxxxxxxexample",
            "sub": "aaaaaaaa-bbbb-cccc-dddd-example",
            "token_use": "access",
            "scope": "openid profile",
            "username": "alice",
            "cognito:groups": ["nodecert-admins"],
        },
        {"issuer": COGNITO_ISS, "audience": "xxxxxxxxxxxxexample"},
        "aaaaaaaa-bbbb-cccc-dddd-example",
    ),
    (
        "keycloak",
        {
            "iss": KEYCLOAK_ISS,
            "aud": ["nodecert", "account"],
            "sub": "36fa0f91-f94d-4a0c-afed-6b7d952e47da",
            "typ": "Bearer",
            "azp": "nodecert",
            "realm_access": {"roles": ["offline_access", "nodecert-admins"]},
            "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
            "preferred_username": "alice",
        },
        {
            "issuer": KEYCLOAK_ISS,
            "audience": "nodecert",
            "admin_claim": "realm_access.roles",
        },
        "36fa0f91-f94d-4a0c-afed-6b7d952e47da",
    ),
    (
        "keycloak-client-role",
        {
            "iss": KEYCLOAK_ISS,
            "aud": "nodecert",
            "sub": "36fa0f91-f94d-4a0c-afed-6b7d952e47da",
            "typ": "Bearer",
            "azp": "nodecert",
            "realm_access": {"roles": ["offline_access"]},
            "resource_access": {"nodecert": {"roles": ["nodecert-admins"]}},
        },
        {
            "issuer": KEYCLOAK_ISS,
            "audience": "nodecert",
            "admin_claim": "resource_access.nodecert.roles",
        },
        "36fa0f91-f94d-4a0c-afed-6b7d952e47da",
    ),
    (
        "auth0",
        {
            "iss": AUTH0_ISS,
            "aud": ["https://nodecert.example.com", "https://my-tenant.us.auth0.com/userinfo"],
            "sub": "auth0|5f7c8ec7c33c6c004bbafe82",
            "azp": "my-client-id",
            "scope": "openid profile",
            "https://nodecert.example.com/roles": ["nodecert-admins"],
        },
        {
            "issuer": AUTH0_ISS,
            "audience": "https://nodecert.example.com",
            "admin_claim": "https://nodecert.example.com/roles",
        },
        "auth0|5f7c8ec7c33c6c004bbafe82",
    ),
    (
        "auth0-google",
        {
            "iss": AUTH0_ISS,
            "aud": "https://nodecert.example.com",
            "sub": "google-oauth2|103547991597142817347",
            "https://nodecert.example.com/roles": ["nodecert-admins"],
        },
        {
            "issuer": AUTH0_ISS,
            "audience": "https://nodecert.example.com",
            "admin_claim": "https://nodecert.example.com/roles",
        },
        "google-oauth2|103547991597142817347",
    ),
    (
        "okta-access",
        {
            "ver": 1,
            "iss": OKTA_ISS,
            "aud": "api://default",
            "cid": "0oa1234567890abcdef",
            "uid": "00uid4BxXw6I6TV4m0g3",
            "sub": "john.doe@example.com",
            "scp": ["openid", "profile"],
            "groups": ["Everyone", "nodecert-admins"],
        },
        {"issuer": OKTA_ISS, "audience": "api://default", "user_id_claim": "uid"},
        "00uid4BxXw6I6TV4m0g3",
    ),
    (
        "okta-access-by-login",
        {
            "ver": 1,
            "iss": OKTA_ISS,
            "aud": "api://default",
            "uid": "00uid4BxXw6I6TV4m0g3",
            "sub": "john.doe@example.com",
            "groups": ["Everyone", "nodecert-admins"],
        },
        {"issuer": OKTA_ISS, "audience": "api://default", "admin_claim": "groups"},
        "john.doe@example.com",
    ),
    (
        "entra-v2",
        {
            "ver": "2.0",
            "iss": ENTRA_ISS,
            "aud": ENTRA_CLIENT,
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "oid": "00000000-0000-0000-66f3-3332eca7ea81",
            "tid": "9122040d-6c67-4c5b-b112-36a304b66dad",
            "preferred_username": "alice@contoso.onmicrosoft.com",
            "roles": ["nodecert-admins"],
            "groups": ["2f4a9d1e-1f2b-4a35-9b1e-5c2f8c0d9e7a"],
        },
        {
            "issuer": ENTRA_ISS,
            "audience": ENTRA_CLIENT,
            "user_id_claim": "oid",
            "admin_claim": "roles",
        },
        "00000000-0000-0000-66f3-3332eca7ea81",
    ),
    (
        "entra-v2-pairwise-sub",
        {
            "ver": "2.0",
            "iss": ENTRA_ISS,
            "aud": ENTRA_CLIENT,
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "oid": "00000000-0000-0000-66f3-3332eca7ea81",
            "roles": ["nodecert-admins"],
        },
        {"issuer": ENTRA_ISS, "audience": ENTRA_CLIENT, "admin_claim": "roles"},
        "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
    ),
]

# Where each case keeps its admin role, to take it away again.
ROLE_PATHS = {
    "cognito-id": "cognito:groups",
    "cognito-access": "cognito:groups",
    "keycloak": "realm_access.roles",
    "keycloak-client-role": "resource_access.nodecert.roles",
    "auth0": "https://nodecert.example.com/roles",
    "auth0-google": "https://nodecert.example.com/roles",
    "okta-access": "groups",
    "okta-access-by-login": "groups",
    "entra-v2": "roles",
    "entra-v2-pairwise-sub": "roles",
}


def verifier(**options: Any) -> OIDCVerifier:
    return OIDCVerifier(
        jwks=StaticJWKS(JWKS),
        admin_group="nodecert-admins",
        clock=lambda: NOW,
        **options,
    )


def sign(claims: dict[str, Any]) -> str:
    return jwt.encode({**claims, **TIMES}, KEY, algorithm="RS256", headers={"kid": KID})


def without_role(claims: dict[str, Any], path: str) -> dict[str, Any]:
    copied = json.loads(json.dumps(claims))
    if path in copied:
        copied[path] = ["users"]
        return copied
    *parents, last = path.split(".")
    node = copied
    for part in parents:
        node = node[part]
    node[last] = ["users"]
    return copied


@pytest.mark.parametrize(("name", "claims", "options", "subject"), CASES, ids=[c[0] for c in CASES])
def test_a_provider_token_names_the_user_and_the_admin_role(name, claims, options, subject):
    principal = verifier(**options).verify(sign(claims))
    assert principal.subject == subject
    assert principal.user_id == user_id_for_subject(subject)
    assert principal.is_admin
    plain = verifier(**options).verify(sign(without_role(claims, ROLE_PATHS[name])))
    assert not plain.is_admin
    assert plain.user_id == principal.user_id


def test_an_auth0_subject_becomes_the_documented_mapped_id():
    _, claims, options, _ = CASES[4]
    principal = verifier(**options).verify(sign(claims))
    assert principal.user_id == "sha256.igveq6eh4pcfygnsisfs6a3fklyawldy4i4unu4qu7uen5vnldqq"


def test_without_an_admin_claim_keycloak_roles_do_not_make_an_admin():
    # The default reads cognito:groups or groups only: a realm role named like the admin
    # group must not count until NODECERT_ADMIN_CLAIM says where roles are.
    _, claims, options, _ = CASES[2]
    options = {k: v for k, v in options.items() if k != "admin_claim"}
    assert not verifier(**options).verify(sign(claims)).is_admin


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({}, "has no 'uid' claim"),
        ({"uid": 42}, "'uid' claim: subject: must be a string, got int"),
        ({"uid": ""}, "'uid' claim: subject: must be 1 to 1024"),
        ({"uid": {"id": "x"}}, "must be a string, got dict"),
    ],
)
def test_a_token_without_a_usable_user_id_claim_is_a_401(claims, message):
    token = sign({"iss": OKTA_ISS, "aud": "api://default", "sub": "alice", **claims})
    with pytest.raises(AuthenticationError, match=message):
        verifier(issuer=OKTA_ISS, audience="api://default", user_id_claim="uid").verify(token)


def test_an_exact_claim_name_wins_over_a_dotted_path():
    claims = {"realm_access.roles": ["exact"], "realm_access": {"roles": ["nested"]}}
    assert groups_of(claims, "realm_access.roles") == {"exact"}
    assert groups_of({"realm_access": {"roles": ["nested"]}}, "realm_access.roles") == {"nested"}


@pytest.mark.parametrize(
    "value", [None, 7, True, {"roles": ["a"]}, [1, None, {"x": 1}], "", [], 1.5]
)
def test_roles_of_another_shape_hold_no_group(value):
    assert groups_of({"roles": value}, "roles") == frozenset()


def test_api_gateway_string_forms_of_a_configured_claim_are_understood():
    assert groups_of({"roles": "[a nodecert-admins]"}, "roles") == {"a", "nodecert-admins"}
    assert groups_of({"roles": "a,nodecert-admins"}, "roles") == {"a", "nodecert-admins"}
    principal = principal_from_claims(
        {"oid": "u-1", "roles": "a,nodecert-admins"},
        admin_group="nodecert-admins",
        user_id_claim="oid",
        admin_claim="roles",
    )
    assert principal.user_id == "u-1" and principal.is_admin


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    st.dictionaries(st.sampled_from(["sub", "uid", "a", "a.b", "b"]), json_values, max_size=5),
    st.sampled_from(["sub", "uid", "a.b", "https://x.example/id"]),
    st.sampled_from([None, "a", "a.b", "a.b.c", "https://x.example/roles"]),
)
def test_any_claims_give_a_principal_or_a_401(claims, user_id_claim, admin_claim):
    try:
        principal = principal_from_claims(
            claims,
            admin_group="nodecert-admins",
            user_id_claim=user_id_claim,
            admin_claim=admin_claim,
        )
    except AuthenticationError:
        return
    assert principal.user_id == user_id_for_subject(claim_at(claims, user_id_claim))
