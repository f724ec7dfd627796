"""Bearer-token verification for any OIDC issuer (Cognito, Keycloak, Auth0, the dev issuer).

Only asymmetric algorithms (RS256, ES256) are accepted, and the algorithm must match the
key type the JWKS publishes for the token's ``kid``: this closes ``alg: none``, HS256
signed with a public key, and RS/ES confusion. Times are checked against an injected
clock with a small leeway.

Cognito issues two kinds of token (see the Cognito developer guide, "Verifying a JSON web
token"): ID tokens carry ``aud`` = app client id and ``token_use: id``; access tokens
carry no ``aud`` but ``client_id`` and ``token_use: access``. Both are accepted with the
configured audience as the client id.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nodecert.core.errors import AuthenticationError, BackendUnavailableError
from nodecert.core.jose import Claims, parse_claims, parse_header
from nodecert.core.tokens import is_finite_number, verify_signature
from nodecert.core.values import Principal
from nodecert.verifiers.gateway import groups_of, principal_from_claims

if TYPE_CHECKING:
    import jwt

__all__ = [
    "JWKS",
    "OIDCVerifier",
    "RemoteJWKS",
    "StaticJWKS",
    "groups_of",
    "is_finite_number",
    "verify_signature",
]

# The embedded dev issuer (verifiers/devissuer.py), named here without importing it.
_DEV_ISSUER = "urn:nodecert:dev-issuer"

_ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}
_MAX_TOKEN_BYTES = 8 * 1024


class JWKS:
    """A set of public keys by ``kid``."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        import jwt  # Lazily: PyJWT costs a Lambda cold start ~11 ms it rarely needs.

        self.keys: dict[str, jwt.PyJWK] = {}
        entries = document.get("keys")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            kid, kty = entry.get("kid"), entry.get("kty")
            if isinstance(kid, str) and kty in ("RSA", "EC") and entry.get("use", "sig") == "sig":
                try:
                    self.keys[kid] = jwt.PyJWK(entry)
                except jwt.PyJWTError:
                    continue  # An unusable key is ignored, as RFC 7517 section 5 allows.

    def get(self, kid: str) -> jwt.PyJWK | None:
        """The key for ``kid``, or None."""
        return self.keys.get(kid)


class StaticJWKS:
    """A JWKS known in advance (the dev issuer's, or a test's)."""

    #: Never waits on the network: token checks with it may run on an event loop.
    may_block = False

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._jwks = JWKS(document)

    def key(self, kid: str) -> jwt.PyJWK | None:
        """The key for ``kid``, or None."""
        return self._jwks.get(kid)


class RemoteJWKS:
    """A JWKS fetched over HTTPS and cached, refreshed when an unknown ``kid`` shows up.

    Refreshes are rate-limited to one per ``min_refresh_s``, so a flood of tokens with
    made-up ``kid`` values cannot make nodecert hammer the issuer.

    By default a refresh runs in the calling thread (fine in a Lambda, or in a thread
    pool). With ``background=True`` (``nodecert serve``, where token checks may run on the
    event loop) nothing ever waits on the issuer: :meth:`start` fetches the keys in a
    thread of its own, and an unknown ``kid`` starts a refresh in another and is answered
    at once: "unavailable, retry in a second" while the refresh runs, "unknown key" after.
    """

    def __init__(
        self,
        url: str,
        *,
        min_refresh_s: float = 60.0,
        timeout_s: float = 5.0,
        fetch: Callable[[str, float], bytes] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        background: bool = False,
    ) -> None:
        self.url = url
        self.fetches = 0
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._fetch = fetch or _http_get
        self._monotonic = monotonic
        self._jwks: JWKS | None = None
        self._last_fetch: float | None = None
        self._lock = threading.Lock()
        self._background = background
        self._refreshing: threading.Thread | None = None

    @property
    def may_block(self) -> bool:
        """Whether :meth:`key` may wait on the network (False in background mode)."""
        return not self._background

    def start(self) -> None:
        """Fetch the keys now: in a background thread in background mode, else inline."""
        with self._lock:
            self._last_fetch = self._monotonic()
            if self._background:
                self._spawn()
                return
            self._refresh()

    def key(self, kid: str) -> jwt.PyJWK | None:
        """The key for ``kid``, refreshing the set (rate-limited) when it is unknown.

        Raises:
            BackendUnavailableError: the JWKS has never been fetched successfully, or (in
                background mode) a refresh that may bring ``kid`` is under way.
        """
        jwks = self._jwks
        if jwks is not None and (found := jwks.get(kid)) is not None:
            return found
        with self._lock:
            now = self._monotonic()
            due = self._last_fetch is None or now - self._last_fetch >= self._min_refresh_s
            if due:
                self._last_fetch = now
                if self._background:
                    self._spawn()
                else:
                    self._refresh()
            refreshing = self._refreshing is not None and self._refreshing.is_alive()
        if self._background and refreshing:
            raise BackendUnavailableError(
                "oidc: fetching the issuer's keys, try again shortly", retry_after=1
            )
        if self._jwks is None:
            raise BackendUnavailableError(
                "oidc: the issuer's JWKS cannot be fetched", retry_after=int(self._min_refresh_s)
            )
        return self._jwks.get(kid)

    def _spawn(self) -> None:
        if self._refreshing is not None and self._refreshing.is_alive():
            return
        self._refreshing = threading.Thread(
            target=self._refresh, name="nodecert-jwks-refresh", daemon=True
        )
        self._refreshing.start()

    def _refresh(self) -> None:
        self.fetches += 1
        try:
            document = json.loads(self._fetch(self.url, self._timeout_s))
        except (OSError, ValueError, http.client.HTTPException):
            return  # Keep the keys we have; the next refresh may succeed.
        jwks = JWKS(document) if isinstance(document, dict) else None
        # A document without a single usable key is a broken answer, not a rotation
        # (an issuer always publishes the key it signs with): keep the keys we have.
        if jwks is not None and jwks.keys:
            self._jwks = jwks


def _http_get(url: str, timeout_s: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
        data: bytes = response.read(1024 * 1024)
        return data


class OIDCVerifier:
    """Verifies bearer JWTs from one issuer and returns the caller. Implements
    ``TokenVerifier``.

    Args:
        issuer: The exact ``iss`` expected.
        audience: The app client id: ``aud`` of ID tokens, ``client_id`` of access tokens.
        jwks: Where the issuer's public keys come from.
        admin_group: Members of this group (``cognito:groups``/``groups``) are admins.
        user_id_claim: The claim (path) that names the user (``sub``); see
            :func:`~nodecert.verifiers.gateway.principal_from_claims`.
        admin_claim: The claim path of the groups or roles (None: ``cognito:groups``,
            else ``groups``).
        leeway_s: Clock skew tolerated on ``exp``/``nbf``/``iat``.
        clock: Returns the current Unix time.
        cache_size: How many verified tokens to remember (0: none). A client sends the
            same token with every request for up to an hour; checking its signature once
            is enough, while its times are checked again on every use.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: StaticJWKS | RemoteJWKS,
        admin_group: str,
        leeway_s: int = 30,
        clock: Callable[[], float] = time.time,
        cache_size: int = 4096,
        user_id_claim: str = "sub",
        admin_claim: str | None = None,
    ) -> None:
        self.issuer = issuer
        self.user_id_claim = user_id_claim
        self.admin_claim = admin_claim
        self.audience = audience
        self.jwks = jwks
        self.admin_group = admin_group
        self.leeway_s = leeway_s
        self.clock = clock
        self._cache_size = cache_size
        # Keyed by the token's SHA-256, so the cache itself holds no usable credential.
        # Each entry keeps the claims typed when the token was verified: a cache hit checks
        # the times again without parsing anything.
        self._cache: OrderedDict[bytes, tuple[Principal, Claims]] = OrderedDict()
        self._cache_lock = threading.Lock()

    @property
    def may_block(self) -> bool:
        """Whether :meth:`verify` may wait on the network (for the issuer's keys)."""
        return bool(getattr(self.jwks, "may_block", True))

    def verify(self, token: str) -> Principal:
        """Verify ``token`` and return the :class:`Principal` it names.

        Raises:
            AuthenticationError: for any defect; the message says which check failed but
                never echoes the token.
            BackendUnavailableError: the issuer's keys cannot be fetched at all.
        """
        if len(token) > _MAX_TOKEN_BYTES:
            raise AuthenticationError(f"token: longer than {_MAX_TOKEN_BYTES} bytes")
        # surrogatepass: a Lambda event's JSON can hold a lone surrogate ("\\ud800"), which
        # plain UTF-8 refuses with an error; the parser below refuses the token instead.
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        with self._cache_lock:
            cached = self._cache.get(digest)
            if cached is not None:
                self._cache.move_to_end(digest)
        if cached is not None:
            principal, claims = cached
            self._check_times(claims)
            return principal
        principal, claims = self._verify(token)
        if self._cache_size:
            with self._cache_lock:
                self._cache[digest] = (principal, claims)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, Claims]:
        # Header and claims are parsed whole, into typed values, before PyJWT sees them.
        header = parse_header(token, what="token")
        claims = parse_claims(token, what="token")
        alg, kid = header.alg, header.kid
        if alg is None or alg not in _ALGORITHMS:
            raise AuthenticationError(f"token: algorithm {str(alg)[:20]!r} is not accepted")
        if not kid:
            raise AuthenticationError("token: header has no 'kid'")
        key = self.jwks.key(kid)
        if key is None:
            hint = ""
            if self.issuer == _DEV_ISSUER:
                # The usual cause: `nodecert dev-token` ran against another home directory.
                hint = (
                    "; the dev issuer's key is per home: was the token made by"
                    " `nodecert dev-token` with another NODECERT_HOME?"
                )
            raise AuthenticationError(f"token: signed with an unknown key ('kid'){hint}")
        if _ALGORITHMS[alg] != key.key_type:
            raise AuthenticationError(f"token: algorithm {alg} does not fit the key's type")
        verify_signature(token, key.key, alg, what="token")
        self._check_claims(claims)
        principal = principal_from_claims(
            claims.raw,
            admin_group=self.admin_group,
            user_id_claim=self.user_id_claim,
            admin_claim=self.admin_claim,
        )
        return principal, claims

    def _check_claims(self, claims: Claims) -> None:
        if claims.iss != self.issuer:
            raise AuthenticationError("token: issuer ('iss') is not the configured issuer")
        self._check_times(claims)
        self._check_audience(claims)

    def _check_times(self, claims: Claims) -> None:
        now = self.clock()
        if claims.exp is None:
            raise AuthenticationError("token: has no expiry ('exp')")
        if now > claims.exp + self.leeway_s:
            raise AuthenticationError("token: expired")
        for name, value in (("nbf", claims.nbf), ("iat", claims.iat)):
            if value is not None and value > now + self.leeway_s:
                raise AuthenticationError(f"token: not valid yet ('{name}' is in the future)")

    def _check_audience(self, claims: Claims) -> None:
        if claims.token_use == "access":
            if claims.client_id != self.audience:
                raise AuthenticationError("token: access token for another client ('client_id')")
            return
        if claims.token_use not in (None, "id"):
            raise AuthenticationError("token: 'token_use' must be 'id' or 'access'")
        if self.audience not in claims.aud:
            raise AuthenticationError("token: audience ('aud') is not this service")
