"""The FastAPI front end: a thin shell over :class:`~nodecert.http.routes.Routes`.

Handlers read raw input, run the route function in the thread pool and render the
:class:`Reply`. ``POST /generate-cert`` is answered ahead of FastAPI's own stack by the
fast path of :mod:`nodecert.http.direct` (the same handler serves the declared route),
which alone awaits the ledger commit. The pydantic models
in ``schemas`` document the API in ``/openapi.json``; parsing itself is done by ``routes``
and every reply, error included, is built by :mod:`nodecert.http.contract`, so that the
Lambda front end answers identically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from nodecert.core.errors import InvalidRequestError, NodecertError
from nodecert.core.values import Principal
from nodecert.http.contract import (
    MalformedRequestError,
    Reply,
    error_reply,
    method_not_allowed,
    no_route,
    problem,
)
from nodecert.http.devlogin import add_dev_login_routes
from nodecert.http.direct import (
    BodyLimit,
    DirectEndpoint,
    NodecertAPI,
    issuance,
    render,
    single_header,
)
from nodecert.http.nodeside_app import add_nodeside_routes
from nodecert.http.nodeside_routes import NodeSideRoutes
from nodecert.http.observe import ObservedApp
from nodecert.http.routes import Routes
from nodecert.http.schemas import (
    AuditList,
    Certificate,
    CertificateList,
    GenerateCertRequest,
    IssuedCertificate,
    Node,
    NodeBody,
    NodeCertificateRequest,
    NodeChange,
    NodeList,
    Problem,
    RevokeRequest,
)
from nodecert.issuing.service import Service

__all__ = ["create_app"]

log = logging.getLogger("nodecert")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": Problem, "content": {"application/problem+json": {}}} for s in statuses}


def _body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": schema}},
        }
    }


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def _add_docs(app: FastAPI) -> None:
    # Swagger UI from the installed package (swagger-ui-bundle), never from a CDN: the
    # page works offline and loads nothing from anyone else.
    from fastapi.openapi.docs import get_swagger_ui_html
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="nodecert API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )
        page.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self'"
            " 'unsafe-inline'; img-src 'self' data:; connect-src 'self'"
        )
        return page


def create_app(service: Service) -> FastAPI:
    """The FastAPI application serving ``service``."""
    routes = Routes.for_service(service)
    app = NodecertAPI(
        title="nodecert",
        version="1",
        description="Per-node mutual-TLS certificates on demand.",
        docs_url=None,
        redoc_url=None,
        # Never a redirect: Starlette answers "/v1/nodes/" with a 307 to a Location built
        # from the client's Host header (a redirect to a host the client chose, keeping
        # method and body). A path with a trailing slash is a 404 like any unknown path.
        redirect_slashes=False,
    )
    app.add_middleware(BodyLimit, max_bytes=service.settings.max_body_bytes)

    @app.exception_handler(NodecertError)
    async def _nodecert_error(request: Request, exc: NodecertError) -> Response:
        return render(error_reply(exc, request.method, request.url.path))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        path = request.url.path
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path in Allow, so
            # collect the methods of them all.
            return render(
                method_not_allowed(request.method, _allowed_methods(app, request), path=path)
            )
        if exc.status_code == 404:
            reply = problem(no_route(path), instance=path)
        else:
            reply = problem(InvalidRequestError(f"request: {exc.detail}"), instance=path)
        reply.headers.update(exc.headers or {})
        return render(reply)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        error = InvalidRequestError(f"{where or 'request'}: {first.get('msg', 'invalid')}")
        return render(problem(error, instance=request.url.path))

    @app.exception_handler(ClientDisconnect)
    async def _hung_up(request: Request, exc: ClientDisconnect) -> Response:
        # Anyone can open a connection and close it mid-body: not the service's fault, so
        # one INFO line, never an ERROR with a traceback. The reply goes nowhere.
        log.info(
            "client hung up before sending the whole body of %s %r",
            request.method,
            request.url.path[:200],
        )
        error = MalformedRequestError("request: the client hung up before its body arrived")
        return render(problem(error, instance=request.url.path))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return render(error_reply(exc, request.method, request.url.path))

    async def authed(request: Request, handler: Callable[[Principal], Reply]) -> Response:
        authorization = single_header(request.headers, "Authorization")

        def run() -> Reply:
            return handler(routes.authenticate(authorization))

        return render(await run_in_threadpool(run))

    # Inline issuance must never wait on the network: a remote CA, a database server or
    # the issuer's keys (bootstrap decides it from what the parts are).
    issue = issuance(routes, inline_ec=service.inline_issuance)

    @app.post(
        "/generate-cert",
        status_code=201,
        response_model=IssuedCertificate,
        responses=_errors(400, 401, 403, 413, 429, 503),
        openapi_extra=_body(GenerateCertRequest),
        summary="Issue a certificate for one of your nodes",
    )
    async def generate_cert(request: Request) -> Response:
        return render(await issue(request.headers, await request.body()))

    app.direct[("POST", "/generate-cert")] = DirectEndpoint(
        issue, max_body_bytes=service.settings.max_body_bytes
    )

    @app.get(
        "/v1/certificates",
        response_model=CertificateList,
        responses=_errors(400, 401),
        summary="List your certificates",
    )
    async def list_certificates(
        request: Request,
        nodeId: str | None = None,  # noqa: N803 - wire name
        status: str | None = None,
        limit: str | None = None,
        cursor: str | None = None,
    ) -> Response:
        # A parameter sent twice never gets here (NodecertAPI refuses it, for every route).
        return await authed(
            request,
            lambda p: routes.list_certificates(
                p, node_id=nodeId, status=status, limit=limit, cursor=cursor
            ),
        )

    @app.get(
        "/v1/certificates/{serial}",
        response_model=Certificate,
        responses=_errors(400, 401, 404),
        summary="One of your certificates",
    )
    async def get_certificate(request: Request, serial: str) -> Response:
        return await authed(request, lambda p: routes.get_certificate(p, serial))

    @app.post(
        "/v1/certificates/{serial}/revoke",
        response_model=Certificate,
        responses=_errors(400, 401, 404, 413, 503),
        openapi_extra=_body(RevokeRequest, required=False),
        summary="Revoke a certificate (owner or admin)",
    )
    async def revoke(request: Request, serial: str) -> Response:
        body = await request.body()
        return await authed(request, lambda p: routes.revoke(p, serial, body))

    @app.get("/v1/nodes", response_model=NodeList, responses=_errors(401), summary="List nodes")
    async def list_nodes(request: Request) -> Response:
        return await authed(request, routes.list_nodes)

    @app.put(
        "/v1/nodes/{nodeId}",
        response_model=NodeChange,
        responses=_errors(400, 401, 403, 413),
        openapi_extra=_body(NodeBody),
        summary="Create or transfer a node (admin); says how many certificates it revoked",
    )
    async def put_node(request: Request, nodeId: str) -> Response:  # noqa: N803
        body = await request.body()
        return await authed(request, lambda p: routes.put_node(p, nodeId, body))

    @app.post(
        "/v1/nodes/{nodeId}/certificate",
        status_code=201,
        response_model=IssuedCertificate,
        responses=_errors(400, 401, 403, 404, 413, 503),
        openapi_extra=_body(NodeCertificateRequest),
        summary="Issue a node's own server (and client) certificate (admin)",
    )
    async def node_certificate(request: Request, nodeId: str) -> Response:  # noqa: N803
        body = await request.body()
        key = single_header(request.headers, "Idempotency-Key")
        return await authed(
            request, lambda p: routes.issue_node_certificate(p, nodeId, body, idempotency_key=key)
        )

    @app.get(
        "/v1/nodes/{nodeId}",
        response_model=Node,
        responses=_errors(400, 401, 403, 404),
        summary="One node (admin)",
    )
    async def get_node(request: Request, nodeId: str) -> Response:  # noqa: N803
        return await authed(request, lambda p: routes.get_node(p, nodeId))

    @app.delete(
        "/v1/nodes/{nodeId}",
        status_code=204,
        responses=_errors(400, 401, 403, 404),
        summary="Delete a node and revoke its certificates (admin)",
    )
    async def delete_node(request: Request, nodeId: str) -> Response:  # noqa: N803
        return await authed(request, lambda p: routes.delete_node(p, nodeId))

    @app.get(
        "/v1/ca",
        responses={200: {"content": {"application/x-pem-file": {}}}},
        summary="The CA chain (PEM): the issuing CA first, up to and including the root",
    )
    async def ca() -> Response:
        return render(routes.ca())

    @app.get(
        "/v1/ca/roots",
        responses={200: {"content": {"application/x-pem-file": {}}}},
        summary="The root CA certificate(s) alone (PEM): the trust anchors for trust stores",
    )
    async def ca_roots() -> Response:
        return render(routes.ca_roots())

    @app.get(
        "/v1/ca/issuers",
        summary="Each CA certificate's key id and state: active, retiring, retired, root",
    )
    async def ca_issuers() -> Response:
        return render(routes.ca_issuers())

    @app.get(
        "/v1/audit",
        response_model=AuditList,
        responses=_errors(400, 401, 403),
        summary="The audit trail: issuance, renewal, revocation, admin actions",
    )
    async def audit(
        request: Request,
        user: str | None = None,
        node: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: str | None = None,
    ) -> Response:
        return await authed(
            request,
            lambda p: routes.audit(
                p, user=user, node=node, action=action, since=since, until=until, limit=limit
            ),
        )

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> Response:
        return render(routes.healthz())

    exposition = service.metrics_exposition
    if exposition is not None:

        @app.get("/metrics", summary="Metrics in the Prometheus text format")
        async def metrics() -> Response:
            # Counts only: no label carries an id, a serial or a path a client chose.
            return Response(
                content=await run_in_threadpool(exposition),
                media_type="text/plain; version=0.0.4; charset=utf-8",
            )

    _add_docs(app)
    add_nodeside_routes(app, NodeSideRoutes.for_service(service), authed, render)
    if service.dev_issuer is not None:
        add_dev_login_routes(app, service.dev_issuer, admin_group=service.settings.admin_group)
    app.observer = ObservedApp(
        app.dispatch, service.metrics, ca=service.settings.ca, direct=app.direct
    )
    return app
