"""The JOSE header and claims parsers are total: a typed value or an AuthenticationError.

Hypothesis writes headers and claims of every JSON type and size (arrays, objects, null,
booleans, huge strings, integers too large for a float, floats, NaN and Infinity written as
literals, deep nesting, repeated members) and signs them with a key the verifier trusts,
so that nothing but the parse stands between them and the checks. Whatever it writes, the
OIDC verifier and the parsers raise :class:`AuthenticationError` or return a value: never a
``TypeError``, an ``OverflowError`` or a ``RecursionError``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodecert.core.errors import AuthenticationError
from nodecert.core.jose import MAX_NUMERIC_DATE, parse_claims, parse_header
from nodecert.verifiers.gateway import principal_from_claims
from nodecert.verifiers.oidc import OIDCVerifier, StaticJWKS
from tests.unit.test_oidc import (
    ADMIN_GROUP,
    AUDIENCE,
    EC_KEY,
    EC_KID,
    ISSUER,
    JWKS_DOCUMENT,
    NOW,
    _b64,
    id_claims,
)

PROPERTIES = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
_ES256 = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256)

# JSON text, not Python values: NaN, Infinity and integers of any size are written as such.
_SCALARS = st.one_of(
    st.just("null"),
    st.sampled_from(["true", "false"]),
    st.integers().map(str),
    st.sampled_from(
        [
            str(10**400),
            str(-(10**400)),
            "1" * 5000,  # Over Python's 4,300-digit limit for int().
            str(MAX_NUMERIC_DATE + 1),
            "1e308",
            "1e999",
            "-1e999",
            "NaN",
            "Infinity",
            "-Infinity",
            "0.5",
            "-1",
            "1.0",
            '"\\ud800"',  # A lone surrogate, as JSON spells it.
            '"a\\u0000b"',
        ]
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=20).map(json.dumps),
    st.integers(1000, 20000).map(lambda n: json.dumps("a" * n)),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(st.sampled_from(["a", "b", "sub"]), inner), max_size=3).map(
            lambda kv: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in kv) + "}"
        ),
    ),
    max_leaves=8,
)
_DEEP = st.integers(1, 4000).map(lambda n: "[" * n + "]" * n)
VALUES = st.one_of(_JSON, _DEEP)

HEADER_MEMBERS = ["alg", "kid", "typ", "x5c", "crit", "b64", "jku"]
CLAIMS = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "token_use", "client_id"]
CLAIMS += ["cognito:groups", "groups", "custom:nodes"]


def _object(base: dict[str, Any], changes: list[tuple[str, str]]) -> str:
    """``base`` as JSON with ``changes`` (raw JSON text) replacing or repeating members."""
    members = {k: json.dumps(v) for k, v in base.items()}
    repeated = []
    for name, text in changes:
        if name in members and text.startswith("{"):
            repeated.append((name, text))  # Sometimes the member twice, not replaced.
        else:
            members[name] = text
    pairs = list(members.items()) + repeated
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"


def _sign(header: str, claims: str) -> str:
    signing_input = f"{_b64(header.encode())}.{_b64(claims.encode())}"
    return f"{signing_input}.{_b64(_ES256.sign(signing_input.encode(), EC_KEY))}"


def _verifier() -> OIDCVerifier:
    return OIDCVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks=StaticJWKS(JWKS_DOCUMENT),
        admin_group=ADMIN_GROUP,
        clock=lambda: NOW,
        leeway_s=30,
        cache_size=0,
    )


@PROPERTIES
@given(
    header=st.lists(st.tuples(st.sampled_from(HEADER_MEMBERS), VALUES), max_size=3),
    claims=st.lists(st.tuples(st.sampled_from(CLAIMS), VALUES), max_size=4),
)
def test_a_signed_token_with_any_header_and_claims_is_a_principal_or_a_401(header, claims):
    token = _sign(
        _object({"alg": "ES256", "kid": EC_KID, "typ": "JWT"}, header),
        _object(id_claims(), claims),
    )
    try:
        principal = _verifier().verify(token)
    except AuthenticationError as exc:
        detail = exc.detail
        assert detail.startswith("token: ")
        assert token not in detail
        return
    # What got through is what the issuer could have meant: typed, in range.
    assert principal.user_id == "alice" or principal.user_id == principal.claims["sub"]
    exp = principal.claims["exp"]
    assert isinstance(exp, int | float) and not isinstance(exp, bool)
    assert NOW - 30 <= exp <= MAX_NUMERIC_DATE


@PROPERTIES
@given(header=VALUES, claims=VALUES, junk=st.text(max_size=30))
def test_the_parsers_are_total(header, claims, junk):
    for token in (_sign(header, claims), junk, f"{junk}.{junk}.{junk}"):
        for parse in (parse_header, parse_claims):
            with contextlib.suppress(AuthenticationError):
                parse(token, what="token")


# What a Lambda event may hold once decoded: any JSON value, NaN and huge integers too.
PYTHON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), MAX_NUMERIC_DATE + 1])
    | st.floats()
    | st.text(max_size=20)
    | st.integers(1000, 20000).map(lambda n: "a" * n),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@PROPERTIES
@given(claims=st.dictionaries(st.sampled_from(CLAIMS), PYTHON_VALUES, max_size=4))
def test_claims_from_api_gateway_are_a_principal_or_a_401(claims):
    data = {"sub": "alice", "exp": "Mon Dec 07 2026", **claims}
    with contextlib.suppress(AuthenticationError):
        principal_from_claims(data, admin_group=ADMIN_GROUP)


@pytest.mark.parametrize(
    ("member", "value", "match"),
    [
        ("alg", ["ES256"], "header 'alg' must be a string"),
        ("alg", {"a": 1}, "header 'alg' must be a string"),
        ("alg", 256, "header 'alg' must be a string"),
        ("alg", "E" * 300, "header 'alg' is longer than 256"),
        ("kid", [EC_KID], "header 'kid' must be a string"),
        ("typ", {"t": "JWT"}, "header 'typ' must be a string"),
        ("x5c", "MIIB", "header 'x5c' must be a list"),
        ("x5c", [1], "header 'x5c' must be a list"),
        ("crit", ["exp"], "'crit' names extensions not supported"),
    ],
)
def test_header_members_of_the_wrong_type_are_named(member, value, match):
    header = json.dumps({"alg": "ES256", "kid": EC_KID, member: value})
    with pytest.raises(AuthenticationError, match=match):
        _verifier().verify(_sign(header, json.dumps(id_claims())))


@pytest.mark.parametrize(
    ("member", "text", "match"),
    [
        ("exp", str(10**400), "'exp' is out of range"),
        ("iat", str(10**400), "'iat' is out of range"),
        ("nbf", str(10**400), "'nbf' is out of range"),
        ("exp", "1" * 5000, "claims is not base64url JSON"),
        ("exp", '"1700003600"', "'exp' must be a number"),
        ("exp", "true", "'exp' must be a number"),
        ("exp", "NaN", "NaN, not JSON"),
        ("sub", "5", "'sub' must be a string"),
        ("sub", json.dumps("a" * 2000), "'sub' is longer than 1024"),
        ("iss", f'["{ISSUER}"]', "'iss' must be a string"),
        ("aud", '{"a": 1}', "'aud' must be a string or a list"),
        ("aud", "[[1]]", "'aud' must be a string or a list"),
        ("token_use", '["id"]', "'token_use' must be a string"),
        ("sub", '"\\ud800"', "'sub' is not valid Unicode"),
        ("iss", '"x\\udfff"', "'iss' is not valid Unicode"),
        ("aud", '["\\ud800"]', "'aud' must be a string or a list"),
    ],
)
def test_claims_of_the_wrong_type_or_size_are_named(member, text, match):
    members = {k: json.dumps(v) for k, v in id_claims().items()} | {member: text}
    claims = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in members.items()) + "}"
    with pytest.raises(AuthenticationError, match=match):
        _verifier().verify(_sign(json.dumps({"alg": "ES256", "kid": EC_KID}), claims))


def test_a_claim_given_twice_is_refused_not_resolved():
    claims = json.dumps(id_claims())[:-1] + ', "sub": "root"}'
    with pytest.raises(AuthenticationError, match="'sub' given twice"):
        _verifier().verify(_sign(json.dumps({"alg": "ES256", "kid": EC_KID}), claims))


@pytest.mark.parametrize("token", ["a.b.c\ud800", "\udfff", "é.é.é", "a.b.c.d", "a..c"])
def test_tokens_outside_the_jws_alphabet_are_a_401(token):
    with pytest.raises(AuthenticationError, match="not a well-formed JWT"):
        _verifier().verify(token)
