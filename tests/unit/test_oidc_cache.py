"""The verified-token cache: signatures are checked once, times on every use."""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from nodecert.core.errors import AuthenticationError
from nodecert.verifiers.oidc import OIDCVerifier, StaticJWKS

KEY = ec.generate_private_key(ec.SECP256R1())
JWKS = {"keys": [{**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key())), "kid": "k"}]}
NOW = 1_800_000_000


class CountingJWKS(StaticJWKS):
    def __init__(self) -> None:
        super().__init__(JWKS)
        self.lookups = 0

    def key(self, kid: str) -> jwt.PyJWK | None:
        self.lookups += 1
        return super().key(kid)


def _token(sub: str = "alice", exp: int = NOW + 60) -> str:
    claims = {"iss": "iss", "aud": "aud", "sub": sub, "exp": exp, "iat": NOW}
    return jwt.encode(claims, KEY, algorithm="ES256", headers={"kid": "k"})


def _verifier(jwks: StaticJWKS, clock: list[float], size: int = 4096) -> OIDCVerifier:
    return OIDCVerifier(
        issuer="iss",
        audience="aud",
        jwks=jwks,
        admin_group="admins",
        clock=lambda: clock[0],
        cache_size=size,
    )


def test_a_token_is_verified_once_and_its_expiry_checked_every_time() -> None:
    jwks, clock = CountingJWKS(), [float(NOW)]
    verifier = _verifier(jwks, clock)
    token = _token()
    assert verifier.verify(token).user_id == "alice"
    assert verifier.verify(token).user_id == "alice"
    assert jwks.lookups == 1
    clock[0] = NOW + 60 + 31  # Past exp plus the leeway.
    with pytest.raises(AuthenticationError, match="expired"):
        verifier.verify(token)


def test_a_forged_token_is_never_cached() -> None:
    jwks, clock = CountingJWKS(), [float(NOW)]
    verifier = _verifier(jwks, clock)
    header, payload, signature = _token().split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            verifier.verify(forged)
    assert jwks.lookups == 2


def test_the_cache_is_bounded() -> None:
    jwks, clock = CountingJWKS(), [float(NOW)]
    verifier = _verifier(jwks, clock, size=2)
    tokens = [_token(sub=f"u{i}") for i in range(3)]
    for token in tokens:
        verifier.verify(token)
    verifier.verify(tokens[0])  # Evicted (oldest), so verified again.
    assert jwks.lookups == 4
    verifier.verify(tokens[2])
    assert jwks.lookups == 4
