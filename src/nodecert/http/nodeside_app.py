"""FastAPI routes of the node side: ``/v1/authorize``, ``/v1/renew``, ``/v1/crl``, revoke-all.

Thin, like :mod:`nodecert.http.app`: read raw input, run the route of
:class:`~nodecert.http.nodeside_routes.NodeSideRoutes` in the thread pool, render the reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from nodecert.core.values import Principal
from nodecert.http.contract import Reply
from nodecert.http.direct import single_header
from nodecert.http.nodeside_routes import SECRET_HEADER, NodeSideRoutes

__all__ = ["add_nodeside_routes"]

_FORWARDED_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")
_PROXY_HEADERS = ("X-Client-Cert", "X-Nodecert-Node")

Authed = Callable[[Request, Callable[[Principal], Reply]], Awaitable[Response]]
Render = Callable[[Reply], Response]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"content": {"application/problem+json": {}}} for s in statuses}


def add_nodeside_routes(
    app: FastAPI, routes: NodeSideRoutes, authed: Authed, render: Render
) -> None:
    """Register the node-side routes of ``routes`` on ``app``."""

    @app.post(
        "/v1/authorize",
        responses=_errors(400, 401, 403),
        summary="Node-side decision for a reverse proxy (nginx auth_request)",
    )
    async def authorize(request: Request) -> Response:
        body = await request.body()
        headers = request.headers
        peer = request.client.host if request.client else None

        secrets = headers.getlist(SECRET_HEADER)

        def run() -> Reply:
            return routes.authorize(
                peer=peer,
                # A repeated secret counts as none (401), whichever copy is right.
                secret=secrets[0] if len(secrets) == 1 else None,
                certificate=headers.get("x-client-cert"),
                node_id=headers.get("x-nodecert-node"),
                body=body,
                forwarded=any(name in headers for name in _FORWARDED_HEADERS),
                repeated=tuple(n for n in _PROXY_HEADERS if len(headers.getlist(n)) > 1),
                secret_sent=bool(secrets),
            )

        return render(await run_in_threadpool(run))

    @app.post(
        "/v1/renew",
        status_code=201,
        responses=_errors(400, 401, 403, 503),
        summary="Renew a certificate with a proof-of-possession token",
    )
    async def renew(request: Request) -> Response:
        body = await request.body()
        authorization = single_header(request.headers, "Authorization")
        return render(await run_in_threadpool(routes.renew, authorization, body))

    @app.get(
        "/v1/crl",
        responses={
            200: {"content": {"application/pkix-crl": {}}},
            304: {"description": "Not modified: If-None-Match names the current CRL"},
            **_errors(400, 404),
        },
        summary="The local CA's CRL (DER); ?issuer=<key id> for a retiring issuing CA's",
    )
    async def crl(request: Request, issuer: str | None = None) -> Response:
        # A repeated ?issuer= never gets here: http.direct refuses it for every route.
        if_none_match = request.headers.get("if-none-match")
        return render(await run_in_threadpool(routes.crl, if_none_match, issuer))

    @app.post(
        "/v1/nodes/{nodeId}/revoke-all",
        responses=_errors(400, 401, 403),
        summary="Revoke every certificate of a node (owner or admin)",
    )
    async def revoke_node(request: Request, nodeId: str) -> Response:  # noqa: N803
        body = await request.body()
        return await authed(request, lambda p: routes.revoke_all(p, body, node_id=nodeId))

    @app.post(
        "/v1/users/{userId}/revoke-all",
        responses=_errors(400, 401, 403),
        summary="Revoke every certificate of a user (that user or admin)",
    )
    async def revoke_user(request: Request, userId: str) -> Response:  # noqa: N803
        body = await request.body()
        return await authed(request, lambda p: routes.revoke_all(p, body, user_id=userId))
