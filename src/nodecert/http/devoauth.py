"""The dev issuer's device authorization endpoints (RFC 8628), for ``nodecert login``.

Registered only while the embedded dev issuer is on. ``POST /v1/dev/device`` opens a grant;
``POST /v1/dev/token`` (``grant_type`` ``urn:ietf:params:oauth:grant-type:device_code``)
answers ``authorization_pending`` until the grant is approved on the server's machine
(``nodecert dev-approve USER-CODE USER``, which needs the home), then a token, once.
``GET /v1/dev/openid-configuration`` names them, as paths (the dev issuer's ``iss`` is a URN,
not a URL, and no URL is ever built from the request's Host). Both POSTs take
``application/x-www-form-urlencoded``, as OAuth clients send it, and answer errors in
OAuth's shape (RFC 6749 section 5.2), ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from nodecert.core.errors import NodecertError
from nodecert.issuing.service import Service
from nodecert.support.devicegrants import (
    DeviceGrants,
    GrantExpiredError,
    GrantPendingError,
    dev_token_claims,
)

__all__ = ["DEVICE_GRANT_TYPE", "add_dev_oauth_routes"]

DEVICE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
_CLIENT_ID = "nodecert-cli"
_TOKEN_LIFETIME_S = 3600
_MAX_FORM_BYTES = 4096


def add_dev_oauth_routes(app: FastAPI, service: Service) -> None:
    """Register the device endpoints on ``app`` when ``service`` runs the dev issuer."""
    minter = service.dev_issuer
    if minter is None:
        return
    settings = service.settings
    grants = DeviceGrants(settings.home / "dev-device")

    @app.get("/v1/dev/openid-configuration", include_in_schema=False)
    async def configuration() -> Response:
        return _json(
            200,
            {
                "device_authorization_endpoint": "/v1/dev/device",
                "token_endpoint": "/v1/dev/token",
                "grant_types_supported": [DEVICE_GRANT_TYPE],
                "client_id": _CLIENT_ID,
            },
        )

    @app.post("/v1/dev/device", include_in_schema=False)
    async def device(request: Request) -> Response:
        form = _form(await request.body(), request.headers.get("content-type"))
        if form is None or form.get("client_id") != _CLIENT_ID:
            return _error("invalid_client", f"client_id: the dev issuer knows {_CLIENT_ID!r}")
        try:
            started = await run_in_threadpool(grants.start)
        except NodecertError as exc:
            return _error("slow_down", str(exc.detail))
        return _json(
            200,
            {
                "device_code": started.device_code,
                "user_code": started.user_code,
                "verification_uri": "urn:nodecert:dev-approve",
                "expires_in": started.expires_in,
                "interval": started.interval,
                "message": (
                    f"on the server's machine, run: nodecert dev-approve {started.user_code} USER"
                ),
            },
        )

    @app.post("/v1/dev/token", include_in_schema=False)
    async def token(request: Request) -> Response:
        form = _form(await request.body(), request.headers.get("content-type"))
        if form is None:
            return _error("invalid_request", "a form of distinct parameters is required")
        if form.get("grant_type") != DEVICE_GRANT_TYPE:
            return _error("unsupported_grant_type", f"grant_type: only {DEVICE_GRANT_TYPE}")
        if form.get("client_id") != _CLIENT_ID:
            return _error("invalid_client", f"client_id: the dev issuer knows {_CLIENT_ID!r}")
        try:
            approval = await run_in_threadpool(grants.redeem, form.get("device_code"))
        except GrantPendingError:
            return _error("authorization_pending", "not approved yet")
        except GrantExpiredError as exc:
            return _error("expired_token", str(exc))
        try:
            user_id, group, extra = dev_token_claims(
                approval.subject,
                admin=approval.admin,
                user_id_claim=settings.user_id_claim,
                admin_claim=settings.admin_claim,
                admin_group=settings.admin_group,
            )
        except NodecertError as exc:
            return _error("access_denied", str(exc.detail))
        minted = minter.mint(user_id, admin_group=group, lifetime_s=_TOKEN_LIFETIME_S, extra=extra)
        body = {
            "access_token": minted,
            "id_token": minted,
            "token_type": "Bearer",
            "expires_in": _TOKEN_LIFETIME_S,
        }
        return _json(200, body)


def _form(body: bytes, content_type: str | None) -> dict[str, str] | None:
    """The parameters of a form body, or None: not a form, not ASCII, or a repeated name."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded" or len(body) > _MAX_FORM_BYTES:
        return None
    try:
        text = body.decode("ascii")
        parsed = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return None
    # RFC 6749 section 3.2: a parameter sent twice makes the request invalid.
    if any(len(values) != 1 for values in parsed.values()):
        return None
    return {name: values[0] for name, values in parsed.items()}


def _json(status: int, body: dict[str, Any]) -> Response:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _error(code: str, description: str) -> Response:
    status = 401 if code == "invalid_client" else 400
    return _json(status, {"error": code, "error_description": description[:200]})
