"""The forged-token matrix, end to end over HTTP: every one is a 401 and issues nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from nodecert.http.app import create_app
from nodecert.issuing.service import Service
from nodecert.verifiers.oidc import OIDCVerifier, RemoteJWKS

from ..conftest import ADMIN

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Sec"
CLIENT_ID = "app-client"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER = ec.generate_private_key(ec.SECP256R1())


def _jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
    return {**json.loads(algorithm.to_jwk(key.public_key())), "kid": kid, "alg": alg, "use": "sig"}


JWKS = {"keys": [_jwk(RSA_KEY, "rsa", "RS256"), _jwk(EC_KEY, "ec", "ES256")]}


class CountingFetch:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, url: str, timeout: float) -> bytes:
        self.calls += 1
        return json.dumps(JWKS).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": CLIENT_ID,
        "token_use": "id",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], key: Any = EC_KEY, alg: str = "ES256", kid: str = "ec") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def _raw(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"
    )


def _hs256_with_public_key() -> str:
    secret = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": "rsa"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims()).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _rs_header_on_ec_key() -> str:
    # An RS256 header naming the EC key's kid: the verifier must refuse the mismatch.
    return _sign(_claims(), key=RSA_KEY, alg="RS256", kid="ec")


def _tampered() -> str:
    header, _, signature = _sign(_claims()).split(".")
    return f"{header}.{_b64(json.dumps(_claims(sub='bob')).encode())}.{signature}"


FORGERIES = {
    "alg none": lambda: _raw({"alg": "none", "kid": "ec"}, _claims()),
    "HS256 signed with the public key": _hs256_with_public_key,
    "RS256 header on an EC key": _rs_header_on_ec_key,
    "ES256 header on an RSA key": lambda: _sign(_claims(), alg="ES256", kid="rsa"),
    "wrong iss": lambda: _sign(_claims(iss="https://evil.example")),
    "wrong aud": lambda: _sign(_claims(aud="other-client")),
    "access token for another client_id": lambda: _sign(
        _claims(aud=None, token_use="access", client_id="other-client")
    ),
    "wrong token_use": lambda: _sign(_claims(token_use="refresh")),
    "expired": lambda: _sign(_claims(exp=int(time.time()) - 3600)),
    "not yet valid": lambda: _sign(_claims(nbf=int(time.time()) + 3600)),
    "unknown kid": lambda: _sign(_claims(), kid="who"),
    "stranger's key with our kid": lambda: _sign(_claims(), key=STRANGER),
    "tampered payload": _tampered,
    "truncated": lambda: _sign(_claims())[:-20],
    "oversized": lambda: _sign(_claims(pad="x" * 9000)),
    "not a JWT": lambda: "hello",
}


@pytest.fixture
def remote_idp(make_service) -> Iterator[tuple[Service, TestClient, CountingFetch]]:
    """A service whose OIDC verifier fetches its JWKS through a counting fake."""
    fetch = CountingFetch()
    service = replace(
        make_service(
            oidc_issuer=ISSUER, oidc_audience=CLIENT_ID, oidc_jwks_url="http://127.0.0.1:9/unused"
        ),
        verifier=OIDCVerifier(
            issuer=ISSUER,
            audience=CLIENT_ID,
            jwks=RemoteJWKS("http://idp/jwks", fetch=fetch),
            admin_group="admins",
        ),
    )
    service.administration.put_node(ADMIN, "n1", "alice")
    with TestClient(create_app(service)) as client:
        yield service, client, fetch


def _post(client: TestClient, token: str) -> Any:
    return client.post(
        "/generate-cert",
        json={"nodeId": "n1", "keyType": "ec-p256"},
        headers={"Authorization": f"Bearer {token}"},
    )


def test_genuine_tokens_pass(remote_idp: tuple[Service, TestClient, CountingFetch]) -> None:
    _, client, _ = remote_idp
    assert _post(client, _sign(_claims())).status_code == 201
    assert _post(client, _sign(_claims(), key=RSA_KEY, alg="RS256", kid="rsa")).status_code == 201
    access = _sign(_claims(aud=None, token_use="access", client_id=CLIENT_ID))
    assert _post(client, access).status_code == 201


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_tokens_are_401(
    remote_idp: tuple[Service, TestClient, CountingFetch], forgery: str
) -> None:
    svc, client, _ = remote_idp
    token = FORGERIES[forgery]()
    response = _post(client, token)
    assert response.status_code == 401, (forgery, response.text)
    assert response.json()["code"] == "unauthenticated"
    assert token not in response.text
    assert svc.authority.ledger.find(user_id="alice") == []
    assert svc.authority.ledger.find(user_id="bob") == []


def test_made_up_kids_cannot_hammer_the_issuer(
    remote_idp: tuple[Service, TestClient, CountingFetch],
) -> None:
    _, client, fetch = remote_idp
    for i in range(50):
        assert _post(client, _sign(_claims(), kid=f"made-up-{i}")).status_code == 401
    # One fetch to load the keys, at most one refresh per minute after that.
    assert fetch.calls <= 2
