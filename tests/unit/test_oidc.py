"""The forged-token matrix for OIDCVerifier, the JWKS caches and the dev issuer round trip.

Every token is minted against a fixed clock (``NOW``) so that no test depends on the wall
clock. Tokens that PyJWT refuses to produce (``alg: none``, HS256 keyed with a PEM, tampered
payloads) are assembled by hand from base64url segments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import threading
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nodecert.core.errors import AuthenticationError, BackendUnavailableError
from nodecert.core.values import Principal
from nodecert.verifiers.devissuer import DEV_AUDIENCE, DEV_ISSUER, DevIssuer
from nodecert.verifiers.oidc import OIDCVerifier, RemoteJWKS, StaticJWKS, groups_of

NOW = 1_700_000_000
LEEWAY = 30
ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TESTPOOL"
AUDIENCE = "app-client-1"
ADMIN_GROUP = "nodecert-admins"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KID = "rsa-1"
EC_KID = "ec-1"


def _jwk(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, kid: str) -> dict[str, Any]:
    if isinstance(public_key, rsa.RSAPublicKey):
        document = jwt.algorithms.RSAAlgorithm.to_jwk(public_key)
    else:
        document = jwt.algorithms.ECAlgorithm.to_jwk(public_key)
    return {**json.loads(document), "kid": kid, "use": "sig"}


JWKS_DOCUMENT = {"keys": [_jwk(RSA_KEY.public_key(), RSA_KID), _jwk(EC_KEY.public_key(), EC_KID)]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def id_claims(**changes: Any) -> dict[str, Any]:
    """Cognito-style ID token claims valid at NOW; a change to None removes the claim."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "token_use": "id",
        "iat": NOW - 60,
        "exp": NOW + 3600,
        "cognito:groups": ["users"],
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def access_claims(**changes: Any) -> dict[str, Any]:
    """Cognito access token claims: no ``aud``, the app client id is ``client_id``."""
    base = id_claims(aud=None, token_use="access", client_id=AUDIENCE, scope="openid")
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def mint(
    claims: dict[str, Any],
    *,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = RSA_KEY,
    alg: str = "RS256",
    kid: str | None = RSA_KID,
) -> str:
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def compact(header: dict[str, Any], payload: dict[str, Any] | bytes, signature: bytes) -> str:
    """A compact JWS assembled by hand, for tokens PyJWT would never produce."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return f"{_b64(json.dumps(header).encode())}.{_b64(body)}.{_b64(signature)}"


def make_verifier(jwks: StaticJWKS | RemoteJWKS | None = None) -> OIDCVerifier:
    return OIDCVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks=jwks if jwks is not None else StaticJWKS(JWKS_DOCUMENT),
        admin_group=ADMIN_GROUP,
        leeway_s=LEEWAY,
        clock=lambda: NOW,
    )


@pytest.fixture
def verifier() -> OIDCVerifier:
    return make_verifier()


# Valid tokens


def test_rs256_id_token_gives_the_principal(verifier):
    principal = verifier.verify(mint(id_claims(sub="alice-1")))
    assert principal == Principal(user_id="alice-1", groups=frozenset({"users"}), is_admin=False)
    assert principal.claims["token_use"] == "id"


def test_es256_id_token_gives_the_principal(verifier):
    token = mint(id_claims(sub="bob.2"), key=EC_KEY, alg="ES256", kid=EC_KID)
    assert verifier.verify(token).user_id == "bob.2"


def test_admin_group_member_is_admin(verifier):
    principal = verifier.verify(mint(id_claims(**{"cognito:groups": ["users", ADMIN_GROUP]})))
    assert principal.is_admin
    assert principal.groups == frozenset({"users", ADMIN_GROUP})


def test_token_without_groups_is_not_admin(verifier):
    principal = verifier.verify(mint(id_claims(**{"cognito:groups": None})))
    assert principal.groups == frozenset()
    assert not principal.is_admin


def test_audience_list_containing_ours_passes(verifier):
    assert verifier.verify(mint(id_claims(aud=["other", AUDIENCE]))).user_id == "alice"


def test_token_without_token_use_is_an_id_token(verifier):
    # Non-Cognito issuers (Keycloak, Auth0) do not send token_use; aud is then required.
    assert verifier.verify(mint(id_claims(token_use=None))).user_id == "alice"


def test_cognito_access_token_passes(verifier):
    principal = verifier.verify(mint(access_claims()))
    assert principal.user_id == "alice"
    assert "aud" not in principal.claims


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exp": NOW - LEEWAY}, id="expired-within-leeway"),
        pytest.param({"nbf": NOW + LEEWAY}, id="nbf-within-leeway"),
        pytest.param({"iat": NOW + LEEWAY}, id="iat-within-leeway"),
    ],
)
def test_clock_skew_within_leeway_passes(verifier, changes):
    assert verifier.verify(mint(id_claims(**changes))).user_id == "alice"


# Forged, stale and foreign tokens


def _hs256_with_public_key_pem() -> str:
    # The classic key confusion: the attacker signs with HMAC using the issuer's public key
    # (which is public) as the secret, hoping the verifier feeds that PEM into HS256.
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": RSA_KID, "typ": "JWT"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(id_claims()).encode())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _tampered_payload() -> str:
    header, _payload, signature = mint(id_claims(sub="alice")).split(".")
    forged = _b64(json.dumps(id_claims(sub="mallory")).encode())
    return f"{header}.{forged}.{signature}"


def _rs256_header_on_ec_kid() -> str:
    # Signed with the RSA key, so only the algorithm/key-type check can stop it early.
    return mint(id_claims(), key=RSA_KEY, alg="RS256", kid=EC_KID)


def _es256_header_on_rsa_kid() -> str:
    return mint(id_claims(), key=EC_KEY, alg="ES256", kid=RSA_KID)


def _signature_cut_short() -> str:
    token = mint(id_claims())
    # An RS256 signature is 342 base64url characters; 340 still decodes, to 255 bytes.
    return token[:-2]


def _cut_inside_payload() -> str:
    token = mint(id_claims())
    return token[: token.index(".") + 10]


def _oversize() -> str:
    return mint(id_claims(padding="x" * 9000))


FORGED = [
    pytest.param(lambda: mint(id_claims(exp=NOW - LEEWAY - 1)), "expired", id="expired"),
    pytest.param(lambda: mint(id_claims(nbf=NOW + LEEWAY + 1)), "nbf", id="nbf-in-future"),
    pytest.param(lambda: mint(id_claims(iat=NOW + LEEWAY + 1)), "iat", id="iat-in-future"),
    pytest.param(lambda: mint(id_claims(iss=ISSUER + "x")), "iss", id="wrong-iss"),
    pytest.param(lambda: mint(id_claims(iss=None)), "iss", id="missing-iss"),
    pytest.param(lambda: mint(id_claims(aud="someone-else")), "aud", id="wrong-aud"),
    pytest.param(lambda: mint(id_claims(aud=["a", "b"])), "aud", id="aud-list-without-ours"),
    pytest.param(
        lambda: mint(access_claims(client_id="someone-else")), "client_id", id="wrong-client-id"
    ),
    pytest.param(lambda: mint(access_claims(client_id=None)), "client_id", id="no-client-id"),
    pytest.param(lambda: mint(id_claims(token_use="refresh")), "token_use", id="token-use-refresh"),
    pytest.param(lambda: mint(id_claims(aud=None)), "aud", id="id-token-without-aud"),
    pytest.param(lambda: mint(access_claims(token_use="id")), "aud", id="token-use-id-aud-missing"),
    pytest.param(lambda: mint(id_claims(), kid="nobody"), "kid", id="unknown-kid"),
    pytest.param(lambda: mint(id_claims(), kid=None), "kid", id="missing-kid"),
    pytest.param(
        lambda: compact({"alg": "RS256", "kid": 7}, id_claims(), b"x"),
        "well-formed",
        id="kid-not-str",
    ),
    pytest.param(
        lambda: compact({"alg": "none", "kid": RSA_KID}, id_claims(), b""),
        "algorithm 'none'",
        id="alg-none",
    ),
    pytest.param(
        lambda: compact({"alg": "None", "kid": RSA_KID}, id_claims(), b""),
        "algorithm 'None'",
        id="alg-None",
    ),
    pytest.param(
        lambda: compact({"kid": RSA_KID}, id_claims(), b""), "algorithm 'None'", id="alg-missing"
    ),
    pytest.param(_hs256_with_public_key_pem, "algorithm 'HS256'", id="hs256-key-confusion"),
    pytest.param(
        lambda: compact({"alg": "ES384", "kid": EC_KID}, id_claims(), b"x" * 96),
        "algorithm 'ES384'",
        id="alg-es384",
    ),
    pytest.param(_rs256_header_on_ec_kid, "does not fit", id="rs256-on-ec-key"),
    pytest.param(_es256_header_on_rsa_kid, "does not fit", id="es256-on-rsa-key"),
    pytest.param(_tampered_payload, "signature does not verify", id="tampered-payload"),
    pytest.param(_signature_cut_short, "signature does not verify", id="truncated-signature"),
    pytest.param(_cut_inside_payload, "not a well-formed JWT", id="truncated-in-payload"),
    pytest.param(_oversize, "longer than 8192 bytes", id="over-8-KiB"),
    pytest.param(lambda: "garbage", "not a well-formed JWT", id="garbage"),
    pytest.param(lambda: "", "not a well-formed JWT", id="empty"),
    pytest.param(lambda: "a.b.c", "not a well-formed JWT", id="three-junk-segments"),
    pytest.param(
        lambda: f"{_b64(b'[1]')}.{_b64(b'{}')}.{_b64(b'x')}", "well-formed", id="header-not-object"
    ),
    pytest.param(lambda: mint(id_claims(sub=None)), "sub", id="sub-missing"),
    pytest.param(lambda: mint(id_claims(exp=None)), "'exp'", id="exp-missing"),
    pytest.param(lambda: mint(id_claims(exp=str(NOW + 3600))), "'exp'", id="exp-string"),
    pytest.param(lambda: mint(id_claims(exp=True)), "'exp'", id="exp-bool"),
    pytest.param(lambda: mint(id_claims(nbf="soon")), "nbf", id="nbf-string"),
]


@pytest.mark.parametrize(("make_token", "check"), FORGED)
def test_forged_or_foreign_token_is_refused(verifier, make_token, check):
    token = make_token()
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(token)
    detail = caught.value.detail
    assert check in detail
    assert detail.startswith("token: ")
    assert str(caught.value) == detail
    # The message must not echo the credential, not even one of its segments.
    for segment in [s for s in [token, *token.split(".")] if len(s) >= 8]:
        assert segment not in detail


def test_token_with_a_forged_signature_from_another_key_is_refused(verifier):
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthenticationError, match="signature does not verify"):
        verifier.verify(mint(id_claims(), key=impostor, kid=RSA_KID))


def test_token_signed_for_another_issuer_with_our_audience_is_refused():
    other = OIDCVerifier(
        issuer="https://issuer.example",
        audience=AUDIENCE,
        jwks=StaticJWKS(JWKS_DOCUMENT),
        admin_group=ADMIN_GROUP,
        clock=lambda: NOW,
    )
    with pytest.raises(AuthenticationError, match="iss"):
        other.verify(mint(id_claims()))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e400"])
def test_non_finite_exp_is_refused(verifier, literal):
    # json.dumps will not write these, so the payload is signed by hand.
    header = {"alg": "ES256", "kid": EC_KID, "typ": "JWT"}
    payload = json.dumps(id_claims(exp=0)).replace('"exp": 0', f'"exp": {literal}').encode()
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(payload)}"
    signature = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(
        signing_input.encode(), EC_KEY
    )
    token = f"{signing_input}.{_b64(signature)}"
    with pytest.raises(AuthenticationError, match=r"exp|not JSON"):
        verifier.verify(token)


def test_jwks_ignores_symmetric_and_encryption_keys():
    jwks = StaticJWKS(
        {
            "keys": [
                {"kty": "oct", "kid": "hmac", "k": _b64(b"secret")},
                {**_jwk(RSA_KEY.public_key(), "enc"), "use": "enc"},
                {"kty": "RSA", "kid": "broken", "n": "AQAB"},
                _jwk(EC_KEY.public_key(), EC_KID),
            ]
        }
    )
    assert jwks.key("hmac") is None
    assert jwks.key("enc") is None
    assert jwks.key("broken") is None
    assert jwks.key(EC_KID) is not None


def test_hs256_token_against_a_jwks_with_an_oct_key_is_refused():
    # Even if the issuer publishes a symmetric key, HS256 is never an accepted algorithm.
    secret = b"0123456789abcdef0123456789abcdef"
    jwks = StaticJWKS({"keys": [{"kty": "oct", "kid": "hmac", "k": _b64(secret)}]})
    token = jwt.encode(id_claims(), secret, algorithm="HS256", headers={"kid": "hmac"})
    with pytest.raises(AuthenticationError, match="HS256"):
        make_verifier(jwks).verify(token)


# groups_of


@pytest.mark.parametrize(
    ("claims", "groups"),
    [
        pytest.param({"cognito:groups": ["a", "b"]}, {"a", "b"}, id="json-list"),
        pytest.param({"cognito:groups": ["a", 5, None]}, {"a"}, id="list-with-non-strings"),
        pytest.param({"cognito:groups": "a,b"}, {"a", "b"}, id="rest-api-comma-joined"),
        pytest.param({"cognito:groups": "[a b]"}, {"a", "b"}, id="http-api-bracketed"),
        pytest.param({"cognito:groups": "[a]"}, {"a"}, id="http-api-single"),
        pytest.param({"cognito:groups": "a"}, {"a"}, id="single-string"),
        pytest.param({"cognito:groups": ""}, set(), id="empty-string"),
        pytest.param({"cognito:groups": "[]"}, set(), id="http-api-empty"),
        pytest.param({"groups": ["kc-group"]}, {"kc-group"}, id="plain-groups-claim"),
        pytest.param({"cognito:groups": ["c"], "groups": ["d"]}, {"c"}, id="cognito-wins"),
        pytest.param({}, set(), id="missing"),
        pytest.param({"cognito:groups": 5}, set(), id="wrong-type"),
    ],
)
def test_groups_of(claims, groups):
    assert groups_of(claims) == frozenset(groups)


# RemoteJWKS


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeFetch:
    """Serves ``document`` (or raises ``error``) and counts calls."""

    def __init__(self, document: dict[str, Any] | bytes) -> None:
        self.document = document
        self.error: Exception | None = None
        self.calls: list[tuple[str, float]] = []

    def __call__(self, url: str, timeout_s: float) -> bytes:
        self.calls.append((url, timeout_s))
        if self.error is not None:
            raise self.error
        if isinstance(self.document, bytes):
            return self.document
        return json.dumps(self.document).encode()


URL = "https://issuer.example/.well-known/jwks.json"
REFRESH = 60.0


def remote(fetch: FakeFetch, clock: FakeClock) -> RemoteJWKS:
    return RemoteJWKS(URL, min_refresh_s=REFRESH, timeout_s=2.5, fetch=fetch, monotonic=clock)


def rsa_only() -> dict[str, Any]:
    return {"keys": [_jwk(RSA_KEY.public_key(), RSA_KID)]}


def test_remote_jwks_fetches_once_and_caches():
    fetch, clock = FakeFetch(rsa_only()), FakeClock()
    jwks = remote(fetch, clock)
    first = jwks.key(RSA_KID)
    clock.now += 10 * REFRESH
    assert jwks.key(RSA_KID) is first
    assert fetch.calls == [(URL, 2.5)]
    assert jwks.fetches == 1


def test_remote_jwks_refreshes_on_an_unknown_kid_after_rotation():
    fetch, clock = FakeFetch(rsa_only()), FakeClock()
    jwks = remote(fetch, clock)
    assert jwks.key(RSA_KID) is not None
    fetch.document = JWKS_DOCUMENT  # The issuer rotates in the EC key.
    clock.now += REFRESH
    assert jwks.key(EC_KID) is not None
    assert len(fetch.calls) == 2


def test_remote_jwks_rate_limits_refreshes_for_unknown_kids():
    fetch, clock = FakeFetch(rsa_only()), FakeClock()
    jwks = remote(fetch, clock)
    for step in range(50):
        clock.now = 1000.0 + step  # All inside the first interval.
        assert jwks.key(f"made-up-{step}") is None
    assert len(fetch.calls) == 1
    clock.now = 1000.0 + REFRESH
    for step in range(50):
        assert jwks.key(f"again-{step}") is None
    assert len(fetch.calls) == 2
    assert jwks.key(RSA_KID) is not None  # Known keys never wait for a refresh.
    assert len(fetch.calls) == 2


def test_remote_jwks_failing_first_fetch_is_backend_unavailable():
    fetch, clock = FakeFetch(rsa_only()), FakeClock()
    fetch.error = OSError("connection refused")
    jwks = remote(fetch, clock)
    with pytest.raises(BackendUnavailableError, match="JWKS") as caught:
        jwks.key(RSA_KID)
    assert caught.value.retry_after == int(REFRESH)
    # Within the interval the issuer is not asked again, and the error stays.
    with pytest.raises(BackendUnavailableError):
        jwks.key(RSA_KID)
    assert len(fetch.calls) == 1
    fetch.error = None
    clock.now += REFRESH
    assert jwks.key(RSA_KID) is not None
    assert len(fetch.calls) == 2


def test_remote_jwks_failing_first_fetch_surfaces_through_the_verifier():
    fetch, clock = FakeFetch(b"<html>captive portal</html>"), FakeClock()
    verifier = make_verifier(remote(fetch, clock))
    with pytest.raises(BackendUnavailableError):
        verifier.verify(mint(id_claims()))


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(OSError("timed out"), id="os-error"),
        pytest.param(TimeoutError(), id="timeout"),
        pytest.param(b"not json", id="invalid-json"),
        pytest.param(b"\xff\xfe", id="invalid-utf8"),
        pytest.param(b"[1, 2]", id="json-not-an-object"),
        pytest.param(http.client.IncompleteRead(b""), id="incomplete-read"),
        pytest.param(b'{"keys": "oops"}', id="keys-a-string"),
        pytest.param(b'{"keys": [1]}', id="keys-not-objects"),
        pytest.param(b'{"keys": null}', id="keys-null"),
    ],
)
def test_remote_jwks_failing_refresh_keeps_the_old_keys(failure):
    fetch, clock = FakeFetch(rsa_only()), FakeClock()
    jwks = remote(fetch, clock)
    old = jwks.key(RSA_KID)
    if isinstance(failure, bytes):
        fetch.document = failure
    else:
        fetch.error = failure
    clock.now += REFRESH
    assert jwks.key("rotated") is None
    assert len(fetch.calls) == 2
    assert jwks.key(RSA_KID) is old


def test_verifier_with_remote_jwks_accepts_a_valid_token():
    fetch, clock = FakeFetch(JWKS_DOCUMENT), FakeClock()
    verifier = make_verifier(remote(fetch, clock))
    assert verifier.verify(mint(id_claims())).user_id == "alice"
    token = mint(id_claims(sub="bob"), key=EC_KEY, alg="ES256", kid=EC_KID)
    assert verifier.verify(token).user_id == "bob"
    assert len(fetch.calls) == 1


# The embedded dev issuer


def dev_verifier(issuer: DevIssuer) -> OIDCVerifier:
    return OIDCVerifier(
        issuer=DEV_ISSUER,
        audience=DEV_AUDIENCE,
        jwks=StaticJWKS(issuer.jwks),
        admin_group=ADMIN_GROUP,
        clock=lambda: NOW,
    )


def new_dev_issuer() -> DevIssuer:
    """A dev issuer in memory (the file it keeps its key in is tests/integration's)."""
    return DevIssuer(ec.generate_private_key(ec.SECP256R1()))


def test_dev_issuer_tokens_round_trip_through_the_oidc_verifier():
    issuer = new_dev_issuer()
    principal = dev_verifier(issuer).verify(issuer.mint("alice", now=NOW))
    assert principal.user_id == "alice"
    assert not principal.is_admin
    assert principal.claims["iss"] == DEV_ISSUER


def test_dev_issuer_admin_tokens_are_admins():
    issuer = new_dev_issuer()
    principal = dev_verifier(issuer).verify(issuer.mint("root", admin_group=ADMIN_GROUP, now=NOW))
    assert principal.is_admin
    assert ADMIN_GROUP in principal.groups


def test_dev_issuer_tokens_expire():
    issuer = new_dev_issuer()
    token = issuer.mint("alice", lifetime_s=60, now=NOW - 3600)
    with pytest.raises(AuthenticationError, match="expired"):
        dev_verifier(issuer).verify(token)


def test_another_dev_issuers_tokens_are_refused():
    ours, theirs = new_dev_issuer(), new_dev_issuer()
    assert ours.kid != theirs.kid
    with pytest.raises(AuthenticationError, match="kid"):
        dev_verifier(ours).verify(theirs.mint("alice", now=NOW))


class GatedFetch(FakeFetch):
    """A fetch that waits until the test opens the gate (a slow issuer)."""

    def __init__(self, document: dict[str, Any]) -> None:
        super().__init__(document)
        self.gate = threading.Event()

    def __call__(self, url: str, timeout_s: float) -> bytes:
        assert self.gate.wait(timeout=10)
        return super().__call__(url, timeout_s)


def test_background_jwks_never_waits_on_the_issuer():
    fetch, clock = GatedFetch(rsa_only()), FakeClock()
    jwks = RemoteJWKS(URL, min_refresh_s=REFRESH, fetch=fetch, monotonic=clock, background=True)
    assert not jwks.may_block and RemoteJWKS(URL).may_block
    jwks.start()  # Returns at once although the issuer has not answered.
    with pytest.raises(BackendUnavailableError, match="try again"):
        jwks.key(RSA_KID)
    fetch.gate.set()
    _wait(lambda: not _raises(jwks.key, RSA_KID))
    # A made-up kid: a refresh in the background, answered at once meanwhile; then None.
    fetch.gate.clear()
    clock.now += REFRESH
    with pytest.raises(BackendUnavailableError):
        jwks.key("made-up")
    fetch.gate.set()
    _wait(lambda: len(fetch.calls) == 2)
    _wait(lambda: not _raises(jwks.key, "made-up"))
    assert jwks.key("made-up") is None
    assert jwks.key(RSA_KID) is not None


def _raises(function: Any, *args: Any) -> bool:
    try:
        function(*args)
    except BackendUnavailableError:
        return True
    return False


def _wait(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_dev_token_from_another_home_gets_a_hint():
    here = DevIssuer(ec.generate_private_key(ec.SECP256R1()))
    elsewhere = DevIssuer(ec.generate_private_key(ec.SECP256R1()))
    dev = OIDCVerifier(
        issuer=DEV_ISSUER,
        audience=DEV_AUDIENCE,
        jwks=StaticJWKS(here.jwks),
        admin_group=ADMIN_GROUP,
    )
    assert dev.verify(here.mint("alice")).user_id == "alice"
    with pytest.raises(AuthenticationError, match="another NODECERT_HOME"):
        dev.verify(elsewhere.mint("alice"))


def test_an_unknown_kid_from_a_real_issuer_gets_no_dev_hint(verifier):
    with pytest.raises(AuthenticationError) as refused:
        verifier.verify(mint(id_claims(), kid="rotated-away"))
    assert refused.value.detail == "token: signed with an unknown key ('kid')"
