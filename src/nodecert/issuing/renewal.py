"""Renewal without logging in again: a proof-of-possession token instead of a user token.

The client signs a short JWT with its *current* certificate's private key and puts that
certificate in the ``x5c`` header (RFC 7515 section 4.1.6). The token travels in an
``Authorization: Bearer`` header, so it works behind TLS-terminating proxies and load
balancers that would drop a client certificate (the same idea as step-ca's ``x5c``
renewal tokens). nodecert then checks:

- the JWT: algorithm fits the certificate's key, signature, ``aud`` is this service,
  ``iat``/``exp`` present with ``exp - iat`` at most five minutes, ``jti`` present and
  never seen before (:class:`~nodecert.core.ports.ReplayGuard`, shared by every worker);
- the certificate, with the :class:`~nodecert.nodeside.access.AccessDecider`: chains to our CA,
  within its validity (plus a configurable grace after expiry, none by default), in the
  ledger and not revoked, its node still owned by its user.

It then issues the successor (:meth:`Authority.issue_successor`): the same identity,
profile, DNS names and lifetime, a fresh key, the lineage recorded (``renewed_from`` = the
old serial). The old certificate becomes ``superseded`` in the same transaction: it stays
valid until it expires, so a node can roll over without a gap, but it cannot renew again
(409 ``already_renewed``: two holders of one key) and no longer counts toward the cap.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nodecert.core.errors import AuthenticationError, ConflictError
from nodecert.core.jose import Claims, parse_claims, parse_header
from nodecert.core.ports import ReplayGuard
from nodecert.core.tokens import (
    MAX_RENEWAL_TOKEN_LIFETIME,
    mint_renewal_token,
    renewal_audience,
    verify_signature,
)
from nodecert.issuing.authority import Authority, IssuedCertificate
from nodecert.nodeside.access import AccessDecider, AccessDeniedError

__all__ = [
    "MAX_TOKEN_LIFETIME",
    "RenewalRequest",
    "Renewer",
    "mint_renewal_token",
    "renewal_audience",
]

MAX_TOKEN_LIFETIME = MAX_RENEWAL_TOKEN_LIFETIME
_MAX_TOKEN_BYTES = 16 * 1024
_LEEWAY = timedelta(seconds=30)
_ALGORITHMS = {"ES256": "EC", "ES384": "EC", "RS256": "RSA", "PS256": "RSA"}


@dataclass(frozen=True, slots=True)
class RenewalRequest:
    """A renewal as parsed by an adapter: the token, and optionally a new CSR or key type."""

    token: str
    request_id: str
    csr: object | None = None
    key_type: object | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Renewer:
    """Checks a proof-of-possession token and renews the certificate it proves.

    Args:
        authority: Issues the new certificate and records it.
        decider: The node-side decision (chain, validity, revocation, ownership).
        replay: Where used ``jti`` values are remembered (shared by all workers).
        audience: The ``aud`` renewal tokens must carry.
        grace: How long after expiry a certificate may still be renewed (default none).
        clock: Returns the current time, timezone-aware UTC.
    """

    def __init__(
        self,
        *,
        authority: Authority,
        decider: AccessDecider,
        replay: ReplayGuard,
        audience: str,
        grace: timedelta = timedelta(0),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.authority = authority
        self.decider = decider
        self.replay = replay
        self.audience = audience
        self.grace = grace
        self.clock = clock

    def renew(self, request: RenewalRequest) -> IssuedCertificate:
        """Renew the certificate that signed ``request.token``.

        Raises:
            AuthenticationError: the token is malformed, forged, expired, too long-lived,
                for another audience, or replayed.
            AccessDeniedError: the certificate is foreign, expired (beyond the grace),
                revoked, unknown, or its node changed owner.
            AlreadyRenewedError: the certificate was renewed before.
            InvalidRequestError: a bad CSR or key type.
            BackendUnavailableError: the CA or the store cannot answer now.
        """
        certificate, claims = self._verify_token(request.token)
        decision = self.decider.decide_for_renewal(certificate, grace=self.grace)
        if not decision.allowed or decision.identity is None or decision.serial is None:
            raise AccessDeniedError(decision)
        # Consumed only once the token is known to be genuine, so a forger cannot burn
        # someone else's jti; consumed before issuing, so two racing replays issue once.
        self._use_once(decision.serial, claims)
        return self.authority.issue_successor(
            decision.serial,
            request_id=request.request_id,
            key_type=request.key_type,
            csr=request.csr,
        )

    def _verify_token(self, token: str) -> tuple[x509.Certificate, Claims]:
        if len(token) > _MAX_TOKEN_BYTES:
            raise AuthenticationError(f"renewal token: longer than {_MAX_TOKEN_BYTES} bytes")
        # Header and claims are parsed whole, into typed values, before PyJWT sees them.
        header = parse_header(token, what="renewal token")
        claims = parse_claims(token, what="renewal token")
        alg = header.alg
        if alg is None or alg not in _ALGORITHMS:
            raise AuthenticationError(f"renewal token: algorithm {str(alg)[:20]!r} not accepted")
        certificate = _x5c_leaf(header.x5c)
        try:
            public_key = certificate.public_key()
        except (UnsupportedAlgorithm, ValueError) as exc:
            # The x5c certificate is untrusted input: an unknown key algorithm (or a key
            # that does not parse) is the caller's fault, not ours.
            raise AuthenticationError(
                "renewal token: the x5c certificate's public key is not usable"
            ) from exc
        family = "EC" if isinstance(public_key, ec.EllipticCurvePublicKey) else "RSA"
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise AuthenticationError("renewal token: the x5c certificate has an unusable key")
        if _ALGORITHMS[alg] != family:
            raise AuthenticationError(f"renewal token: {alg} does not fit the certificate's key")
        verify_signature(token, public_key, alg, what="renewal token")
        self._check_claims(claims)
        return certificate, claims

    def _check_claims(self, claims: Claims) -> None:
        if self.audience not in claims.aud:
            raise AuthenticationError("renewal token: audience ('aud') is not this service")
        iat, exp, jti = claims.iat, claims.exp, claims.jti
        if iat is None or exp is None:
            raise AuthenticationError("renewal token: 'iat' and 'exp' are required")
        if jti is None or not 1 <= len(jti) <= 128:
            raise AuthenticationError("renewal token: 'jti' (1-128 characters) is required")
        now = self.clock().timestamp()
        leeway = _LEEWAY.total_seconds()
        if exp - iat > MAX_TOKEN_LIFETIME.total_seconds():
            raise AuthenticationError("renewal token: lifetime ('exp' - 'iat') over 5 minutes")
        if now > exp + leeway:
            raise AuthenticationError("renewal token: expired")
        if iat > now + leeway:
            raise AuthenticationError("renewal token: not valid yet ('iat' is in the future)")

    def _use_once(self, serial: str, claims: Claims) -> None:
        # Scoped to the certificate, so two clients picking the same jti never collide.
        key = hashlib.sha256(f"{serial}\0{claims.jti}".encode()).hexdigest()
        # Checked above: exp is at most five minutes after an iat that is not in the future.
        expires_at = datetime.fromtimestamp(float(claims.exp or 0), UTC) + _LEEWAY
        try:
            self.replay.use_once(key, expires_at=expires_at)
        except ConflictError as exc:
            raise AuthenticationError("renewal token: already used ('jti' replayed)") from exc


def _x5c_leaf(x5c: tuple[str, ...]) -> x509.Certificate:
    if not x5c:
        raise AuthenticationError("renewal token: header has no 'x5c' certificate")
    try:
        der = base64.b64decode(x5c[0], validate=True)
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise AuthenticationError("renewal token: 'x5c' is not a DER certificate") from exc
