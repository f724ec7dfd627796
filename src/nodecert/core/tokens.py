"""JWS primitives shared by the token verifiers, the renewal use case and the client.

The OIDC verifier (:mod:`nodecert.verifiers.oidc`) and the renewal use case
(:mod:`nodecert.issuing.renewal`) both parse the header and claims first (with the total
parsers of :mod:`nodecert.core.jose`), then check the signature, then the claims' meaning,
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
    "is_finite_number",
    "mint_renewal_token",
    "renewal_audience",
    "verify_signature",
]

MAX_RENEWAL_TOKEN_LIFETIME = timedelta(minutes=5)


def verify_signature(token: str, key: Any, alg: str, *, what: str) -> None:
    """Raise unless ``token``'s ``alg`` signature verifies with ``key``.

    Only the signature is checked here: the header and claims are parsed beforehand by the
    total parsers of :mod:`nodecert.core.jose`, and times, issuer and audience are checked
    by the caller (with its own clock). ``what`` names the token in error messages.

    Raises:
        AuthenticationError: a bad signature, or a token PyJWT cannot decode.
    """
    import jwt

    try:
        jwt.PyJWS().decode_complete(token, key=key, algorithms=[alg])
    except jwt.InvalidSignatureError as exc:
        raise AuthenticationError(f"{what}: signature does not verify") from exc
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"{what}: cannot be decoded") from exc


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """A JSON number that is not a boolean, NaN or infinite (JSON parsers accept those).

    An integer is finite whatever its size (never converted to a float, which overflows).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


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
