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
import hmac
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodecert.core.errors import AuthenticationError, ConfigurationError
from nodecert.core.identity import validate_id
from nodecert.support.files import write_atomic

__all__ = ["CODE_LIFETIME_S", "DEV_AUDIENCE", "DEV_ISSUER", "DevIssuer"]

DEV_ISSUER = "urn:nodecert:dev-issuer"
DEV_AUDIENCE = "nodecert"
# Authorization codes of the login flow (`nodecert login`): short-lived, single use.
CODE_LIFETIME_S = 120
_CODE_AUDIENCE = "urn:nodecert:dev-issuer:code"


class DevIssuer:
    """Mints ES256 tokens for the embedded default; publishes its JWKS."""

    client_id = DEV_AUDIENCE

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        import jwt  # Lazily: see verifiers/oidc.py.

        self._key = key
        jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        self.kid = _thumbprint(jwk)
        self.jwks: dict[str, Any] = {
            "keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "ES256"}]
        }
        # Codes redeemed by this process (with their expiry). Each worker keeps its own:
        # the login flow is for development, where one worker is the default.
        self._redeemed: dict[str, float] = {}
        self._redeemed_lock = threading.Lock()

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

    def mint_code(
        self,
        user_id: str,
        *,
        admin: bool,
        client_id: str,
        redirect_uri: str,
        code_challenge: str,
        now: float | None = None,
    ) -> str:
        """An authorization code (RFC 6749 section 4.1) for the login flow, bound to the
        client, its loopback redirect and its PKCE challenge (RFC 7636). Self-contained and
        signed, so any worker can redeem it."""
        validate_id(user_id, field="user")
        issued = int(time.time() if now is None else now)
        claims = {
            "aud": _CODE_AUDIENCE,
            "sub": user_id,
            "admin": admin,
            "cid": client_id,
            "uri": redirect_uri,
            "pkce": code_challenge,
            "iat": issued,
            "exp": issued + CODE_LIFETIME_S,
            "jti": uuid.uuid4().hex,
        }
        import jwt

        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})

    def redeem_code(
        self,
        code: str,
        *,
        client_id: str,
        redirect_uri: str,
        code_verifier: str,
        admin_group: str,
        now: float | None = None,
    ) -> str:
        """The ID token for an authorization code, once (RFC 6749 section 4.1.3).

        Raises:
            AuthenticationError: the code is not ours, expired, already used, or for
                another client, redirect or PKCE verifier.
        """
        import jwt

        try:
            claims = jwt.decode(
                code,
                self._key.public_key(),
                algorithms=["ES256"],
                audience=_CODE_AUDIENCE,
                options={"require": ["exp", "jti", "sub"]},
            )
        except jwt.PyJWTError:
            raise AuthenticationError("code: not a valid authorization code") from None
        digest = hashlib.sha256(code_verifier.encode("ascii", "replace")).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if claims.get("cid") != client_id or claims.get("uri") != redirect_uri:
            raise AuthenticationError("code: issued to another client or redirect_uri")
        if not hmac.compare_digest(str(claims.get("pkce", "")), challenge):
            raise AuthenticationError("code_verifier: does not match the code's challenge")
        moment = time.time() if now is None else now
        with self._redeemed_lock:
            self._redeemed = {j: e for j, e in self._redeemed.items() if e > moment}
            if claims["jti"] in self._redeemed:
                raise AuthenticationError("code: already used")
            self._redeemed[str(claims["jti"])] = float(claims["exp"])
        group = admin_group if claims.get("admin") is True else None
        return self.mint(str(claims["sub"]), admin_group=group)


def _thumbprint(jwk: dict[str, Any]) -> str:
    # RFC 7638 JWK thumbprint over the required EC members, base64url without padding.
    canonical = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
