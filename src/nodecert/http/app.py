"""The FastAPI front end: one endpoint per row of :data:`nodecert.http.api.ROUTES`.

Each endpoint reads the raw input and hands it to the :class:`~nodecert.http.direct.Runner`,
which runs the row's use case where the row says and renders the
:class:`~nodecert.http.contract.Reply`. A row that runs ``DIRECT`` (``POST /generate-cert``)
is also answered ahead of FastAPI's own stack by :mod:`nodecert.http.direct`, with the same
runner. The rows' pydantic models (``schemas``) document the API in ``/openapi.json``;
parsing itself is done by the route classes, and every reply, error included, is built by
:mod:`nodecert.http.contract`, so that the Lambda front end answers identically.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from nodecert.core.errors import InvalidRequestError, NodecertError
from nodecert.http import schemas
from nodecert.http.api import ROUTES, Handlers, Route, Runs
from nodecert.http.contract import (
    MalformedRequestError,
    error_reply,
    method_not_allowed,
    no_route,
    problem,
)
from nodecert.http.devlogin import add_dev_login_routes
from nodecert.http.direct import BodyLimit, DirectEndpoint, NodecertAPI, Runner, render
from nodecert.http.observe import ObservedApp
from nodecert.http.schemas import Problem
from nodecert.issuing.service import Service

__all__ = ["create_app"]

log = logging.getLogger("nodecert")


def _responses(route: Route) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {}
    if route.media_type is not None:
        responses[route.status] = {"content": {route.media_type: {}}}
    for status, description in (route.notes or {}).items():
        responses[status] = {"description": description}
    for status in route.errors:
        responses[status] = {"model": Problem, "content": {"application/problem+json": {}}}
    return responses


def _request_body(route: Route) -> dict[str, Any] | None:
    if route.body is None:
        return None
    model: type[BaseModel] = getattr(schemas, route.body)
    return {
        "requestBody": {
            "required": route.body_required,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def _add_route(app: FastAPI, route: Route, runner: Runner) -> None:
    """Register ``route`` on ``app``: one endpoint, answered by ``runner``."""

    async def endpoint(request: Request, **values: str | None) -> Response:
        body = await request.body() if route.reads_body else b""
        params = {name: str(values[name]) for name in route.parameters}
        # A parameter sent twice never gets here (NodecertAPI refuses it, for every route).
        query = {name: value for name in route.query if (value := values[name]) is not None}
        peer = request.client.host if request.client else None
        reply = await runner.answer(
            route, request.headers, body, params=params, query=query, peer=peer
        )
        return render(reply)

    # FastAPI reads the parameters off the signature: the path template's and the query's,
    # as strings, so /openapi.json lists them (parsing them is the route's own job).
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
            ),
            *(
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str)
                for name in route.parameters
            ),
            *(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, annotation=str | None, default=None
                )
                for name in route.query
            ),
        ],
        return_annotation=Response,
    )
    app.add_api_route(
        route.path,
        endpoint,
        methods=[route.method],
        name=route.name,
        summary=route.summary,
        status_code=route.status,
        response_model=None if route.reply is None else getattr(schemas, route.reply),
        responses=_responses(route) or None,
        openapi_extra=_request_body(route),
    )


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
    handlers = Handlers.for_service(service)
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

    runner = Runner(handlers, inline_issuance=service.inline_issuance)
    for route in ROUTES:
        _add_route(app, route, runner)
        if route.runs is Runs.DIRECT:
            app.direct[(route.method, route.path)] = DirectEndpoint(
                functools.partial(runner.answer, route),
                max_body_bytes=service.settings.max_body_bytes,
            )

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
    if service.dev_issuer is not None:
        add_dev_login_routes(app, service.dev_issuer, admin_group=service.settings.admin_group)
    app.observer = ObservedApp(
        app.dispatch, service.metrics, ca=service.settings.ca, direct=app.direct
    )
    return app
