"""The embedded development token issuer.

Used only when no OIDC issuer is configured, so that ``nodecert serve`` works on a laptop
with no identity provider. Its signing key lives in ``<home>/dev-issuer.key`` (mode 0600);
anyone who can read that file can mint tokens for any user, which is why the server logs
a loud warning whenever it is active. Tokens it mints are checked by the same
:class:`~nodecert.verifiers.oidc.OIDCVerifier` as production tokens.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodecert.core.errors import ConfigurationError
from nodecert.core.files import write_atomic
from nodecert.core.identity import validate_id

__all__ = ["DEV_AUDIENCE", "DEV_ISSUER", "DevIssuer"]

DEV_ISSUER = "urn:nodecert:dev-issuer"
DEV_AUDIENCE = "nodecert"


class DevIssuer:
    """Mints ES256 tokens for the embedded default; publishes its JWKS."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        import jwt  # Lazily: see verifiers/oidc.py.

        self._key = key
        jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        self.kid = _thumbprint(jwk)
        self.jwks: dict[str, Any] = {
            "keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "ES256"}]
        }

    def public_pem(self) -> bytes:
        """The issuer's public key as PEM (SubjectPublicKeyInfo)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def open_or_create(cls, home: Path) -> DevIssuer:
        """Load ``<home>/dev-issuer.key``, creating it (mode 0600) on first use.

        Raises:
            ConfigurationError: the file exists but is not an EC P-256 key.
        """
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = home / "dev-issuer.key"
        with os.fdopen(os.open(home / ".dev-issuer.lock", os.O_RDWR | os.O_CREAT, 0o600)) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                new_key = ec.generate_private_key(ec.SECP256R1())
                pem = new_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                write_atomic(path, pem, mode=0o600)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"dev issuer: cannot load {path}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"dev issuer: {path} is not an EC key")
        return cls(key)

    def mint(
        self,
        user_id: str,
        *,
        admin_group: str | None = None,
        lifetime_s: int = 3600,
        extra: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> str:
        """A signed ID token for ``user_id``; in ``admin_group`` when one is given."""
        validate_id(user_id, field="userId")
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "sub": user_id,
            "token_use": "id",
            "iat": issued,
            "exp": issued + lifetime_s,
            "jti": str(uuid.uuid4()),
        }
        if admin_group:
            claims["cognito:groups"] = [admin_group]
        claims.update(extra or {})
        import jwt

        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})


def _thumbprint(jwk: dict[str, Any]) -> str:
    # RFC 7638 JWK thumbprint over the required EC members, base64url without padding.
    canonical = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
