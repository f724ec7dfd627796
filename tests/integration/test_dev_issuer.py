"""The dev issuer's key file: created once with mode 0600, reopened, and refused if wrong."""

from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nodecert.core.errors import ConfigurationError
from nodecert.verifiers.devissuer import DEV_AUDIENCE, DEV_ISSUER, DevIssuer
from nodecert.verifiers.oidc import OIDCVerifier, StaticJWKS

NOW = 1_700_000_000


def dev_verifier(issuer: DevIssuer) -> OIDCVerifier:
    return OIDCVerifier(
        issuer=DEV_ISSUER,
        audience=DEV_AUDIENCE,
        jwks=StaticJWKS(issuer.jwks),
        admin_group="nodecert-admins",
        clock=lambda: NOW,
    )


def test_dev_issuer_creates_its_key_with_mode_0600(tmp_path):
    home = tmp_path / "home"
    DevIssuer.open_or_create(home)
    key_file = home / "dev-issuer.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_dev_issuer_reopens_the_same_key(tmp_path):
    first = DevIssuer.open_or_create(tmp_path)
    second = DevIssuer.open_or_create(tmp_path)
    assert second.kid == first.kid
    assert second.jwks == first.jwks
    # A token minted by one instance verifies with the other's JWKS.
    token = first.mint("alice", now=NOW)
    assert dev_verifier(second).verify(token).user_id == "alice"


def test_dev_issuer_with_a_corrupt_key_file_is_a_configuration_error(tmp_path):
    (tmp_path / "dev-issuer.key").write_bytes(b"not a key")
    with pytest.raises(ConfigurationError, match="dev issuer"):
        DevIssuer.open_or_create(tmp_path)


def test_dev_issuer_with_an_rsa_key_file_is_a_configuration_error(tmp_path):
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "dev-issuer.key").write_bytes(pem)
    with pytest.raises(ConfigurationError, match="not an EC key"):
        DevIssuer.open_or_create(tmp_path)
