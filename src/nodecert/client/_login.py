"""Signing in from a terminal: the OAuth 2.0 authorization code flow with PKCE (RFC 7636) to a
loopback redirect (RFC 8252), as native apps do with any OIDC provider.

:func:`login` reads the provider's discovery document, listens on ``127.0.0.1`` for the
redirect, hands the authorization URL to the user (a browser is opened when one is there),
checks ``state`` on the way back and trades the code and its PKCE verifier for tokens. The
token is returned, never written anywhere. Standard library only: a node's install has it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from nodecert.client._transport import Request, Transport, UrllibTransport
from nodecert.core.errors import AuthenticationError, InvalidRequestError

__all__ = ["LoginResult", "login"]

_MAX_REPLY = 1 << 20


@dataclass(frozen=True, slots=True)
class LoginResult:
    """The tokens of a sign-in (``id_token`` may be absent for a provider that gives none)."""

    id_token: str | None
    access_token: str | None


def login(
    issuer: str,
    client_id: str,
    *,
    scope: str = "openid",
    show: Callable[[str], None],
    open_browser: Callable[[str], object] | None = None,
    port: int = 0,
    redirect_host: str = "127.0.0.1",
    timeout: float = 300.0,
    cafile: Path | None = None,
    transport: Transport | None = None,
) -> LoginResult:
    """Sign in at ``issuer`` as the public client ``client_id``; return the tokens.

    Args:
        issuer: The provider's issuer URL (its discovery document is below it).
        client_id: The app client registered at the provider, with the redirect
            ``http://127.0.0.1/callback`` (any port: RFC 8252 section 7.3).
        scope: The scopes asked for.
        show: Tells the user the URL to open (the CLI prints it on stderr).
        open_browser: Opens the URL in a browser, when there is one.
        port: The loopback port to listen on (0: any free one).
        redirect_host: ``127.0.0.1`` (RFC 8252's advice) or ``localhost``, for providers
            that accept only that name (Amazon Cognito); the listener is on 127.0.0.1.
        timeout: Seconds to wait for the sign-in.
        cafile: A CA bundle for an https provider with a private CA.
        transport: How HTTP requests are sent (tests pass a fake).

    Raises:
        InvalidRequestError: the issuer URL or the provider's discovery document is not usable.
        AuthenticationError: the provider refused, the sign-in timed out, or ``state`` did
            not come back unchanged.
    """
    if redirect_host not in ("127.0.0.1", "localhost"):
        raise InvalidRequestError("redirect host: 127.0.0.1 or localhost")
    sender = transport or UrllibTransport(cafile=cafile)
    discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    if urlsplit(discovery_url).scheme not in ("http", "https"):
        raise InvalidRequestError(f"issuer: {issuer[:100]!r} must be an http(s) URL")
    document = _json(sender.send(Request("GET", discovery_url, {}), timeout=30), "discovery")
    authorize = _endpoint(document, "authorization_endpoint", discovery_url)
    token_url = _endpoint(document, "token_endpoint", discovery_url)

    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state = secrets.token_urlsafe(24)
    with _Callback(port) as callback:
        redirect = f"http://{redirect_host}:{callback.port}/callback"
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect,
            "scope": scope,
            "state": state,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
        url = authorize + ("&" if "?" in authorize else "?") + urlencode(query)
        show(url)
        if open_browser is not None:
            open_browser(url)
        answer = callback.wait(timeout)
    if answer.get("state") != state:
        raise AuthenticationError("login: the answer's state is not ours; try again")
    if "error" in answer:
        refusal = answer.get("error_description") or answer["error"]
        raise AuthenticationError(f"login: the provider refused: {refusal[:200]}")
    code = answer.get("code")
    if not code:
        raise AuthenticationError("login: the provider sent no code")
    form = urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "client_id": client_id,
            "code_verifier": verifier,
        }
    ).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    reply = sender.send(Request("POST", token_url, headers, form), timeout=30)
    tokens = _json(reply, "token")
    if reply.status != 200:
        reason = tokens.get("error_description") or tokens.get("error") or f"HTTP {reply.status}"
        raise AuthenticationError(f"login: the provider refused the code: {str(reason)[:200]}")
    found = {k: tokens.get(k) for k in ("id_token", "access_token")}
    if not any(isinstance(v, str) and v for v in found.values()):
        raise AuthenticationError("login: the provider's answer holds no token")
    return LoginResult(
        id_token=found["id_token"] if isinstance(found["id_token"], str) else None,
        access_token=found["access_token"] if isinstance(found["access_token"], str) else None,
    )


def _json(reply: object, what: str) -> dict[str, object]:
    body = getattr(reply, "body", b"")[:_MAX_REPLY]
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        status = getattr(reply, "status", "?")
        raise InvalidRequestError(
            f"login: the provider's {what} answer is not JSON (HTTP {status})"
        )
    return data


def _endpoint(document: dict[str, object], name: str, base: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"login: the discovery document has no {name}")
    # Relative endpoints (the nodecert dev issuer's) resolve against the document's URL.
    url = urljoin(base, value)
    if urlsplit(url).scheme not in ("http", "https"):
        raise InvalidRequestError(f"login: {name} is not an http(s) URL")
    return url


class _Callback:
    """A one-shot HTTP listener on 127.0.0.1 that takes the provider's redirect."""

    def __init__(self, port: int) -> None:
        self._answer: dict[str, str] | None = None
        self._arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/callback" or outer._arrived.is_set():
                    self.send_error(404)
                    return
                query = parse_qs(parts.query, max_num_fields=10)
                outer._answer = {k: v[0] for k, v in query.items() if len(v) == 1}
                outer._arrived.set()
                page = b"<!doctype html><p>nodecert: signed in. You can close this window.</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:
                pass  # The code is a credential: never in a log line.

        try:
            self._server = HTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise InvalidRequestError(
                f"login: cannot listen on 127.0.0.1:{port}: {exc.strerror}"
            ) from None
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> _Callback:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, timeout: float) -> dict[str, str]:
        if not self._arrived.wait(timeout) or self._answer is None:
            raise AuthenticationError(f"login: no sign-in within {timeout:g} s")
        return self._answer
