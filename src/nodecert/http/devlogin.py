"""The dev issuer's login endpoints: OAuth 2.0 authorization code with PKCE, for ``nodecert login``.

What an OIDC provider offers a native app (RFC 8252: the authorization code flow with PKCE,
RFC 7636, to a loopback redirect), so that ``nodecert login`` is tested end to end on a laptop
exactly as it runs against Cognito, Keycloak, Auth0, Okta or Entra:

- ``GET /dev-issuer/.well-known/openid-configuration``: the discovery document. Its endpoints
  are paths, resolved against the document's own URL: the service does not know the name it
  is reached by and never builds one from the request's ``Host``.
- ``GET /dev-issuer/authorize``: a page that asks who to sign in as (the dev issuer signs for
  anyone: it is the development stand-in for a real provider).
- ``POST /dev-issuer/authorize``: makes the code and shows a link to the client's loopback
  redirect with it. The service never redirects (no ``Location``): the browser follows the
  link.
- ``POST /dev-issuer/token``: the code, its redirect and PKCE verifier for an ID token.

Only present while the dev issuer is (never with ``NODECERT_OIDC_ISSUER``), and not in the
OpenAPI contract. Every parameter is parsed by a total function; a bad one is a 400 page (or
RFC 6749's ``invalid_request``/``invalid_grant`` JSON on the token endpoint).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from nodecert.core.errors import AuthenticationError, InvalidIdentifierError
from nodecert.core.identity import validate_id
from nodecert.issuing.service import TokenMinter

__all__ = ["add_dev_login_routes"]

_PREFIX = "/dev-issuer"
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_STATE = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 section 4.1.
_CODE = re.compile(r"[A-Za-z0-9._-]{1,2048}")
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_MAX_FORM = 8192
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # The pages run no script, load nothing and post only to this service.
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class _BadRequestError(Exception):
    """One parameter is wrong: the message names it (RFC 6749's invalid_request)."""


def add_dev_login_routes(app: FastAPI, issuer: TokenMinter, *, admin_group: str) -> None:
    """Add the dev issuer's login endpoints to ``app`` (see the module docstring)."""
    client_id = issuer.client_id

    @app.get(f"{_PREFIX}/.well-known/openid-configuration", include_in_schema=False)
    async def discovery() -> Response:
        return _json(
            200,
            {
                "issuer": "urn:nodecert:dev-issuer",
                "authorization_endpoint": f"{_PREFIX}/authorize",
                "token_endpoint": f"{_PREFIX}/token",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
            },
        )

    @app.get(f"{_PREFIX}/authorize", include_in_schema=False)
    async def authorize_page(request: Request) -> Response:
        try:
            params = _authorization(dict(_single(request.query_params.multi_items())), client_id)
        except _BadRequestError as exc:
            return _page(400, "Sign-in refused", f"<p>{html.escape(str(exc))}</p>")
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
            for name, value in params.items()
        )
        hint = html.escape(request.query_params.get("login_hint", "")[:64])
        body = (
            "<p>The nodecert development issuer signs in as any user you name. It is not for"
            " production.</p>"
            f'<form method="post" action="{_PREFIX}/authorize">{hidden}'
            f'<label>User <input name="user" value="{hint}" required maxlength="64"></label>'
            '<label><input type="checkbox" name="admin" value="1"> admin</label>'
            '<button type="submit">Sign in</button></form>'
        )
        return _page(200, "Sign in to nodecert (development)", body)

    @app.post(f"{_PREFIX}/authorize", include_in_schema=False)
    async def authorize(request: Request) -> Response:
        try:
            form = _form(await request.body())
            params = _authorization(form, client_id)
            user = validate_id(form.get("user", ""), field="user")
        except (_BadRequestError, InvalidIdentifierError) as exc:
            message = exc.detail if isinstance(exc, InvalidIdentifierError) else str(exc)
            return _page(400, "Sign-in refused", f"<p>{html.escape(message)}</p>")
        code = issuer.mint_code(
            user,
            admin=form.get("admin") == "1",
            client_id=params["client_id"],
            redirect_uri=params["redirect_uri"],
            code_challenge=params["code_challenge"],
        )
        target = params["redirect_uri"] + "?" + urlencode({"code": code, "state": params["state"]})
        body = (
            f"<p>Signed in as <b>{html.escape(user)}</b>. Continue to the application:</p>"
            f'<p><a id="continue" href="{html.escape(target)}">continue</a></p>'
        )
        return _page(200, "Signed in", body)

    @app.post(f"{_PREFIX}/token", include_in_schema=False)
    async def token(request: Request) -> Response:
        try:
            form = _form(await request.body())
            if form.get("grant_type") != "authorization_code":
                raise _BadRequestError("grant_type: only authorization_code is supported")
            if form.get("client_id") != client_id:
                raise _BadRequestError(f"client_id: must be {client_id!r}")
            code = _match(_CODE, form.get("code"), "code")
            verifier = _match(_VERIFIER, form.get("code_verifier"), "code_verifier")
            redirect = _loopback(form.get("redirect_uri"))
        except _BadRequestError as exc:
            return _json(400, {"error": "invalid_request", "error_description": str(exc)})

        def redeem() -> str:
            return issuer.redeem_code(
                code,
                client_id=client_id,
                redirect_uri=redirect,
                code_verifier=verifier,
                admin_group=admin_group,
            )

        try:
            token = await run_in_threadpool(redeem)
        except AuthenticationError as exc:
            return _json(400, {"error": "invalid_grant", "error_description": exc.detail})
        return _json(
            200,
            {"id_token": token, "access_token": token, "token_type": "Bearer", "expires_in": 3600},
        )


def _authorization(params: Mapping[str, str], client_id: str) -> dict[str, str]:
    if params.get("response_type") != "code":
        raise _BadRequestError("response_type: only code is supported")
    if params.get("client_id") != client_id:
        raise _BadRequestError(f"client_id: must be {client_id!r}")
    if params.get("code_challenge_method") != "S256":
        raise _BadRequestError("code_challenge_method: S256 is required (RFC 7636)")
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": _loopback(params.get("redirect_uri")),
        "code_challenge": _match(_CHALLENGE, params.get("code_challenge"), "code_challenge"),
        "code_challenge_method": "S256",
        "state": _match(_STATE, params.get("state"), "state"),
    }


def _loopback(value: str | None) -> str:
    # RFC 8252 section 7.3: a native app's loopback redirect, http, with a port.
    if value is None or len(value) > 200 or not value.isascii() or not value.isprintable():
        raise _BadRequestError("redirect_uri: required, a loopback http URL")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise _BadRequestError("redirect_uri: not a URL") from None
    if (
        parts.scheme != "http"
        or parts.hostname not in _LOOPBACK
        or port is None
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
        or any(c in value for c in "\"'<>\\ ")
    ):
        raise _BadRequestError(
            "redirect_uri: must be http://127.0.0.1:<port>/... (a loopback redirect)"
        )
    return value


def _match(pattern: re.Pattern[str], value: str | None, name: str) -> str:
    if value is None or not pattern.fullmatch(value):
        raise _BadRequestError(f"{name}: missing or malformed")
    return value


def _single(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[str] = set()
    for name, _ in items:
        if name in seen:
            raise _BadRequestError(f"{name[:40]}: sent more than once")
        seen.add(name)
    return items


def _form(body: bytes) -> dict[str, str]:
    if len(body) > _MAX_FORM:
        raise _BadRequestError("body: too large")
    try:
        text = body.decode("ascii")
        items = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError):
        raise _BadRequestError("body: not application/x-www-form-urlencoded") from None
    return dict(_single(items))


def _page(status: int, title: str, body: str) -> Response:
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return Response(text, status_code=status, media_type="text/html", headers=_PAGE_HEADERS)


def _json(status: int, body: dict[str, object]) -> Response:
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
