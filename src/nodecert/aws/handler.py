"""API Gateway → Lambda front end: REST API (payload v1) and HTTP API (payload v2) events.

The caller is taken from the claims an API Gateway authorizer already verified
(:mod:`nodecert.verifiers.gateway`: REST API ``requestContext.authorizer.claims``, HTTP API
``requestContext.authorizer.jwt.claims``). Only API Gateway can set ``requestContext``, so
their signature and times are trusted as they are; their app client and ``token_use`` are
checked against ``NODECERT_OIDC_AUDIENCE`` (a Cognito authorizer accepts any app client of
the pool). When no authorizer ran (open routes, or an API without one), a ``Bearer``
token is verified by the service's OIDC verifier, exactly as the HTTP server does.
Everything else is shared with FastAPI: the routes are the rows of
:data:`nodecert.http.api.ROUTES` marked ``on_lambda`` (who may call each says whether a
caller is needed), parsing is done by their route classes, and every reply and error (the
405 included) is built by :mod:`nodecert.http.contract`.

``POST /v1/renew`` is the exception: its Bearer token is a proof-of-possession JWT signed
by the certificate being renewed, checked by the
:class:`~nodecert.issuing.renewal.Renewer`. Claims are never consulted for it, even if an
authorizer did run. ``POST /v1/authorize`` (for an nginx beside a self-hosted node; the
authorizer Lambda plays that role here), ``GET /v1/crl`` (local CA only; ACM PCA publishes
its own to S3) and ``GET /v1/ca/roots`` and ``/v1/ca/issuers`` are not routed.

Routing uses what API Gateway matched, never the raw URL path: ``resource`` (REST, payload
v1) or ``routeKey`` (HTTP API, payload v2) names the route in API Gateway's notation
(``/v1/nodes/{nodeId}``) and ``pathParameters`` carries its values. The raw path includes a
custom domain's base path (``/certs/v1/nodes/n1`` for the route ``/v1/nodes/{nodeId}``)
and, on HTTP APIs, the stage only when called through the execute-api endpoint, so
neither can be stripped reliably. A greedy route (``/{proxy+}``) is resolved from its
``proxy`` parameter; only an HTTP API's ``$default`` route, which names no path, falls back
to ``rawPath`` (with the stage removed when it leads the path).

The service is wired once per execution environment: on Lambda, in the init phase (when
this module is imported; see :mod:`nodecert.aws.lifecycle` for SnapStart), elsewhere on
the first call of :func:`lambda_handler`.
"""

from __future__ import annotations

import gc
import os

# On Lambda, the init phase starts with this module's imports: the cyclic collector is
# paused before nodecert's modules load (their classes and tables live as long as the
# process, and collecting while they are made frees nothing: 7-14 ms of a cold start,
# measured), and init_phase, at the bottom, freezes what the imports and the wiring made
# and resumes it (see nodecert.aws.lifecycle). Should an import below fail, the function
# cannot start anyway.
_ON_LAMBDA = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
_COLLECTING = gc.isenabled()
if _ON_LAMBDA:
    gc.disable()

import functools
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from nodecert.aws.cahome import install_packaged_chain
from nodecert.aws.events import Request, parse_event
from nodecert.aws.metrics import EmbeddedMetrics
from nodecert.bootstrap import build_service, settings_from_environment
from nodecert.core.context import bind_source
from nodecert.core.errors import NotFoundError
from nodecert.core.metrics import NO_METRICS, Metrics
from nodecert.core.values import Principal
from nodecert.http.api import ROUTES, Handlers, Route
from nodecert.http.call import Call
from nodecert.http.contract import Reply, error_reply, method_not_allowed, no_route
from nodecert.http.observe import Exchange, record_exchange
from nodecert.http.routes import Issuance
from nodecert.issuing.service import Service
from nodecert.support.budget import time_budget
from nodecert.support.logs import bind_request_id
from nodecert.support.logs import configure as configure_logging
from nodecert.verifiers.gateway import principal_from_claims

__all__ = ["ROUTE_KEYS", "LambdaApp", "application", "lambda_handler"]


class LambdaApp:
    """Turns API Gateway proxy events into calls of the rows of
    :data:`~nodecert.http.api.ROUTES` (those ``on_lambda``) and back.

    Args:
        handlers: The service's route classes (without node-side ones, renewal answers
            404).
        admin_group: Members of this group (from the authorizer's claims) are admins.
        max_body_bytes: Larger bodies are refused with 413.
        client_ids: The Cognito app client(s) whose tokens an authorizer's claims may come
            from (``aud`` / ``client_id``); without any, claims are refused (401).
        user_id_claim: The claim that names the user (``NODECERT_USER_ID_CLAIM``).
        admin_claim: The claim path of the groups (``NODECERT_ADMIN_CLAIM``).
    """

    def __init__(
        self,
        handlers: Handlers,
        *,
        admin_group: str,
        max_body_bytes: int,
        client_ids: frozenset[str] = frozenset(),
        user_id_claim: str = "sub",
        admin_claim: str | None = None,
    ) -> None:
        self.handlers = handlers
        self.admin_group = admin_group
        self.client_ids = client_ids
        self.user_id_claim = user_id_claim
        self.admin_claim = admin_claim
        self.max_body_bytes = max_body_bytes
        # The wired service, when application() built this (for the init phase's warm-up).
        self.service: Service | None = None
        # Where each exchange is counted (the same counts as nodecert serve's /metrics);
        # flushed at the end of every invocation when it can be.
        self.metrics: Metrics = NO_METRICS
        self.ca_name = "local"

    @classmethod
    def for_service(cls, service: Service) -> LambdaApp:
        """The adapter for ``service``: its settings' admin group, body limit and app client
        (``NODECERT_OIDC_AUDIENCE``, the audience that Bearer tokens are held to too), and
        its metrics.
        """
        audience = service.settings.oidc_audience
        app = cls(
            Handlers.for_service(service),
            admin_group=service.settings.admin_group,
            max_body_bytes=service.settings.max_body_bytes,
            client_ids=frozenset({audience}) if audience else frozenset(),
            user_id_claim=service.settings.user_id_claim,
            admin_claim=service.settings.admin_claim,
        )
        app.metrics = service.metrics
        app.ca_name = service.settings.ca
        return app

    def handle(self, event: Mapping[str, Any], *, budget_s: float | None = None) -> dict[str, Any]:
        """Answer one API Gateway event with a proxy-integration response.

        Args:
            event: The API Gateway proxy event.
            budget_s: Seconds the request may spend (see :mod:`nodecert.support.budget`):
                remote CA calls that cannot start in time are left undone (a revocation
                stays queued for the scheduled drain) instead of being cut off by the
                Lambda timeout.
        """
        if budget_s is None:
            return self._handle(event)
        with time_budget(budget_s):
            return self._handle(event)

    def _handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        request_id = bind_request_id(_event_request_id(event))
        bind_source(_event_source(event))
        method, path, route, body = "", "/", "unmatched", b""
        try:
            method, path, request = parse_event(
                event, max_body_bytes=self.max_body_bytes, matches=_matches_any
            )
            body = request.body
            route, reply = self._dispatch(request)
        except Exception as exc:  # Every failure gets its problem document.
            reply = error_reply(exc, method, path)
        reply.headers.setdefault("X-Request-Id", request_id)
        self._count(route, method, reply, body, time.perf_counter() - started)
        return _render(reply)

    def _count(self, route: str, method: str, reply: Reply, body: bytes, seconds: float) -> None:
        problem = reply.encoded() if reply.status >= 400 else b""
        exchange = Exchange(route, method or "?", reply.status, seconds, body, problem)
        record_exchange(self.metrics, exchange, ca=self.ca_name)
        flush = getattr(self.metrics, "flush", None)
        if callable(flush):
            flush()

    def principal(self, request: Request) -> Principal:
        """The caller: the authorizer's claims, or else a verified Bearer token.

        Raises:
            AuthenticationError: no usable claims and no valid token.
        """
        if request.claims is None:
            return self.handlers.user.authenticate(request.headers.get("authorization"))
        return principal_from_claims(
            request.claims,
            admin_group=self.admin_group,
            client_ids=self.client_ids,
            user_id_claim=self.user_id_claim,
            admin_claim=self.admin_claim,
        )

    def _dispatch(self, request: Request) -> tuple[str, Reply]:
        allowed: list[str] = []
        for route, pattern in _ROUTES:
            if request.route is not None:
                if route.path != request.route:
                    continue
                params = _route_params(route, request.params or {})
            else:
                match = pattern.fullmatch(request.path)
                if match is None:
                    continue
                params = match.groupdict()
            if route.method == request.method:
                return route.path, self._answer(route, request, params)
            allowed.append(route.method)
            template = route.path
        if not allowed:
            raise no_route(request.path)
        return template, method_not_allowed(request.method, allowed, path=request.path)

    def _answer(self, route: Route, request: Request, params: dict[str, str]) -> Reply:
        headers = _EventHeaders(request.headers)
        caller = self.principal(request) if route.access.authenticated else None
        call = Call(headers, request.body, params, request.query, caller)
        result = route.call(self.handlers, call)
        return result.run() if isinstance(result, Issuance) else result


class _EventHeaders:
    """An event's headers (names in lower case, a repeat already refused by parse_event)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers

    def getlist(self, key: str) -> list[str]:
        value = self._headers.get(key.lower())
        return [] if value is None else [value]


_VALUE = re.compile(r"[^/]{1,256}")


def _compile(path: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]{1,256})", re.escape(path)))


_ROUTES: tuple[tuple[Route, re.Pattern[str]], ...] = tuple(
    (route, _compile(route.path)) for route in ROUTES if route.on_lambda
)
ROUTE_KEYS: tuple[str, ...] = tuple(route.key for route, _ in _ROUTES)
"""Every route the adapter answers, as API Gateway route keys (``"GET /v1/nodes/{nodeId}"``)."""


def _matches_any(path: str) -> bool:
    return any(pattern.fullmatch(path.rstrip("/") or "/") for _, pattern in _ROUTES)


def _route_params(route: Route, params: Mapping[str, str]) -> dict[str, str]:
    """The values of ``route``'s parameters from ``pathParameters``.

    Raises:
        NotFoundError: one is missing or not a single path segment (as the URL path
            pattern would not have matched).
    """
    values: dict[str, str] = {}
    for name in route.parameters:
        value = params.get(name)
        if value is None or not _VALUE.fullmatch(value):
            raise NotFoundError(f"path: no value for {{{name}}} in {route.path}")
        values[name] = value
    return values


def _event_request_id(event: Mapping[str, Any]) -> str | None:
    # API Gateway's id of the request (its access logs carry it too), when it is sane.
    context = event.get("requestContext") if isinstance(event, Mapping) else None
    value = context.get("requestId") if isinstance(context, Mapping) else None
    if isinstance(value, str) and _REQUEST_ID.fullmatch(value):
        return value
    return None


_REQUEST_ID = re.compile(r"[A-Za-z0-9=._-]{1,64}")


def _event_source(event: Mapping[str, Any]) -> str:
    # The caller's address as API Gateway saw it (REST: identity.sourceIp, HTTP API:
    # http.sourceIp), for the audit trail.
    context = event.get("requestContext") if isinstance(event, Mapping) else None
    context = context if isinstance(context, Mapping) else {}
    for holder in (context.get("identity"), context.get("http")):
        if isinstance(holder, Mapping) and isinstance(holder.get("sourceIp"), str):
            return f"lambda {holder['sourceIp'][:64]}"
    return "lambda"


def _render(reply: Reply) -> dict[str, Any]:
    headers = {"Content-Type": reply.media_type, **reply.headers}
    body = "" if reply.status == 204 else reply.encoded().decode()
    return {"statusCode": reply.status, "headers": headers, "body": body, "isBase64Encoded": False}


@functools.cache
def application() -> LambdaApp:
    """The container's :class:`LambdaApp`, wired from the environment on first use."""
    settings = settings_from_environment()
    if settings.log_format == "json":
        configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("nodecert").setLevel(settings.log_level)
    metrics = (
        EmbeddedMetrics(settings.metrics_namespace) if settings.metrics == "on" else NO_METRICS
    )
    install_packaged_chain(settings, on_lambda=bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")))
    service = build_service(settings, metrics=metrics)
    app = LambdaApp.for_service(service)
    app.service = service
    return app


# Kept back from the Lambda timeout: rendering the reply, the ledger writes after a CA call.
_TIMEOUT_MARGIN_S = 2.0


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Entry point: handler ``nodecert.aws.handler.lambda_handler``.

    The request's time budget is what the Lambda context says is left, less a margin.
    """
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    budget = remaining() / 1000 - _TIMEOUT_MARGIN_S if callable(remaining) else None
    return application().handle(event, budget_s=budget)


# AWS_LAMBDA_FUNCTION_NAME is set by the Lambda runtime (and by SAM's local emulation).
if _ON_LAMBDA:
    from nodecert.aws.lifecycle import init_phase

    init_phase(lambda: application().service, collecting=_COLLECTING)
