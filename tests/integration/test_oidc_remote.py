"""A production-style OIDC issuer: JWKS served over real HTTP on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from nodecert.bootstrap import build_service
from nodecert.http.app import create_app

from ..conftest import ADMIN, make_settings

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TEST"
CLIENT_ID = "app-client-1"


class JWKSHandler(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def jwks_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), JWKSHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def _token(**claims: object) -> str:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "u-123",
        "exp": now + 300,
        "iat": now,
        "token_use": "access",
        "client_id": CLIENT_ID,
    }
    return jwt.encode({**base, **claims}, KEY, algorithm="RS256", headers={"kid": "k1"})


def test_cognito_access_token_verified_against_a_remote_jwks(tmp_path: Path, jwks_url: str) -> None:
    settings = make_settings(
        tmp_path / "home", oidc_issuer=ISSUER, oidc_audience=CLIENT_ID, oidc_jwks_url=jwks_url
    )
    service = build_service(settings)
    assert service.dev_issuer is None
    assert not (tmp_path / "home" / "dev-issuer.key").exists()
    service.administration.put_node(ADMIN, "n1", "u-123")
    with TestClient(create_app(service)) as client:
        ok = client.post(
            "/generate-cert",
            json={"nodeId": "n1", "keyType": "ec-p256"},
            headers={"Authorization": f"Bearer {_token()}"},
        )
        assert ok.status_code == 201, ok.text
        assert ok.json()["userId"] == "u-123"
        wrong_client = client.post(
            "/generate-cert",
            json={"nodeId": "n1"},
            headers={"Authorization": f"Bearer {_token(client_id='x')}"},
        )
        assert wrong_client.status_code == 401
        id_token = _token(token_use="id", aud=CLIENT_ID)
        assert (
            client.post(
                "/generate-cert",
                json={"nodeId": "n1", "keyType": "ec-p256"},
                headers={"Authorization": f"Bearer {id_token}"},
            ).status_code
            == 201
        )
    assert JWKSHandler.hits >= 1


def test_unreachable_jwks_is_503_not_401(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "home",
        oidc_issuer=ISSUER,
        oidc_audience=CLIENT_ID,
        oidc_jwks_url="http://127.0.0.1:1/jwks.json",
    )
    service = build_service(settings)
    with TestClient(create_app(service)) as client:
        response = client.post(
            "/generate-cert", json={"nodeId": "n1"}, headers={"Authorization": f"Bearer {_token()}"}
        )
    assert response.status_code == 503
    assert "retry-after" in response.headers
