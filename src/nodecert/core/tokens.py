"""JWS primitives shared by the token verifiers, the renewal use case and the client.

The OIDC verifier (:mod:`nodecert.verifiers.oidc`) and the renewal use case
(:mod:`nodecert.issuing.renewal`) both check a signature first and the claims afterwards,
with their own clock; the client mints the renewal token that the service checks. All of
that meets here so that none of them imports another. PyJWT is imported inside each
function: a node that only runs :mod:`nodecert.verify` never loads it, and a Lambda cold
start pays for it only when a token is actually checked.
"""

from __future__ import annotations

import base64
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodecert.core.errors import AuthenticationError
from nodecert.core.identity import format_serial
from nodecert.core.keys import PrivateKey

__all__ = [
    "MAX_RENEWAL_TOKEN_LIFETIME",
    "decode_signed",
    "is_finite_number",
    "mint_renewal_token",
    "renewal_audience",
    "unverified_header",
]

MAX_RENEWAL_TOKEN_LIFETIME = timedelta(minutes=5)


def unverified_header(token: str, *, what: str) -> dict[str, Any]:
    """The JOSE header of ``token``, before anything about it is trusted.

    Raises:
        AuthenticationError: the token is not a well-formed JWT.
    """
    import jwt

    try:
        header: dict[str, Any] = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"{what}: not a well-formed JWT") from exc
    return header


def decode_signed(token: str, key: Any, alg: str, *, what: str) -> dict[str, Any]:
    """The claims of ``token`` once its ``alg`` signature verifies with ``key``.

    Only the signature is checked here; times, issuer and audience are the caller's (with
    its own clock). ``what`` names the token in error messages.

    Raises:
        AuthenticationError: a bad signature, or a token PyJWT cannot decode.
    """
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise AuthenticationError(f"{what}: signature does not verify") from exc
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"{what}: cannot be decoded") from exc
    return claims


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """A JSON number that is not a boolean, NaN or infinite (JSON parsers accept those)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def renewal_audience(trust_domain: str) -> str:
    """The default ``aud`` of renewal tokens: this service, named in its trust domain."""
    return f"spiffe://{trust_domain}/nodecert"


def mint_renewal_token(
    certificate: x509.Certificate,
    key: PrivateKey,
    *,
    audience: str,
    now: datetime | None = None,
    lifetime: timedelta = timedelta(minutes=2),
) -> str:
    """A proof-of-possession token for renewing ``certificate`` (client side).

    Args:
        certificate: The current certificate.
        key: Its private key (it signs the token; it is never sent).
        audience: The service's renewal audience (see :func:`renewal_audience`).
        now: The current time (default: the system clock).
        lifetime: How long the token is good for, at most five minutes.
    """
    issued = now or datetime.now(UTC)
    lifetime = min(lifetime, MAX_RENEWAL_TOKEN_LIFETIME)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm = "ES384" if key.curve.key_size >= 384 else "ES256"
    else:
        algorithm = "RS256"
    der = certificate.public_bytes(serialization.Encoding.DER)
    claims = {
        "aud": audience,
        "sub": format_serial(certificate.serial_number),
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    headers = {"x5c": [base64.b64encode(der).decode("ascii")], "typ": "JWT"}
    import jwt

    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)
