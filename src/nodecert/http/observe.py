"""What each answered request adds to the metrics, and the ASGI wrapper that records it.

:func:`record_exchange` turns one request and its reply into the counts of
:data:`nodecert.core.metrics.METRICS` (issuance by key type, CA and outcome, quota refusals,
renewals, node-side decisions, every request by route and status); the FastAPI front end
(:class:`ObservedApp`, around everything, the direct ``/generate-cert`` route included) and
the Lambda handler both call it, so both count the same way. Labels take values from small
fixed sets (route templates, key types, problem codes): never an id, serial or path a client
chose.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

from nodecert.core.context import bind_source, open_issuance_note
from nodecert.core.keys import KeyType
from nodecert.core.metrics import Metrics
from nodecert.support.logs import bind_request_id

if TYPE_CHECKING:  # The Lambda package has no Starlette; only the ASGI wrapper needs it.
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Exchange", "ObservedApp", "record_exchange"]

ISSUANCE_ROUTES = frozenset({"/generate-cert", "/v1/nodes/{nodeId}/certificate"})
_KEY_TYPES = frozenset(k.value for k in KeyType)
_DEFAULT_KEY_TYPE = KeyType.RSA_2048.value
# Problem bodies are small; anything longer is not ours to read.
_MAX_PROBLEM_BYTES = 8192


class Exchange(NamedTuple):
    """One answered request, as the metrics see it (a tuple: made on every request).

    Attributes:
        route: The route template (``/v1/nodes/{nodeId}``), or ``unmatched``.
        method: The HTTP method.
        status: The reply's status code.
        seconds: How long the answer took.
        request_body: The request body (read for issuance routes only).
        problem_body: The reply body when it is an error (read for a few routes only).
        reason: The node-side deny reason (``X-Nodecert-Reason``), if any.
        key_type: The issuance's key label as the use case noted it (``csr``,
            ``ec-p256``…); None to read it from ``request_body``.
    """

    route: str
    method: str
    status: int
    seconds: float
    request_body: bytes = b""
    problem_body: bytes = b""
    reason: str | None = None
    key_type: str | None = None


def record_exchange(metrics: Metrics, exchange: Exchange, *, ca: str) -> None:
    """Add ``exchange`` to ``metrics`` (``ca`` names the CA backend, for issuance)."""
    route, status = exchange.route, exchange.status
    metrics.count(
        "http_requests", {"route": route, "method": exchange.method, "status": str(status)}
    )
    if exchange.method != "POST":
        return
    if route in ISSUANCE_ROUTES:
        outcome = "issued" if status == 201 else _code(exchange)
        labels = {
            "route": route,
            "key_type": exchange.key_type or _key_type(exchange.request_body),
            "ca": ca,
            "outcome": outcome,
        }
        metrics.count("issuances", labels)
        metrics.observe("issuance_seconds", {"route": route}, exchange.seconds)
        if status == 429:
            metrics.count("quota_refusals", {"route": route})
    elif route == "/v1/renew":
        metrics.count("renewals", {"outcome": "renewed" if status == 201 else _code(exchange)})
    elif route == "/v1/authorize":
        if status == 200:
            decision, reason = "allow", "ok"
        elif status == 403:
            decision, reason = "deny", exchange.reason or _code(exchange)
        else:
            decision, reason = "error", _code(exchange)
        metrics.count("authorize_decisions", {"decision": decision, "reason": reason})


def _code(exchange: Exchange) -> str:
    # The problem document's stable code; its status when the body is not one of ours.
    try:
        code = json.loads(exchange.problem_body).get("code")
    except (ValueError, AttributeError, RecursionError):
        code = None
    if isinstance(code, str) and code.replace("_", "").isalnum() and len(code) <= 40:
        return code
    return f"http_{exchange.status}"


def _key_type(body: bytes) -> str:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return "unknown"
    if not isinstance(data, dict):
        return "unknown"
    if data.get("csr") is not None:
        return "csr"
    key_type = data.get("keyType")
    if key_type is None:
        return _DEFAULT_KEY_TYPE
    return key_type if isinstance(key_type, str) and key_type in _KEY_TYPES else "invalid"


class ObservedApp:
    """ASGI wrapper: a request id for the logs and ``X-Request-Id``, and the metrics.

    Args:
        app: The application (the FastAPI app with its direct routes).
        metrics: Where the counts go.
        ca: The CA backend's name, for the issuance label.
        routes: Route templates by (method, path) for the direct routes, which FastAPI's
            router never sees.
        clock: A monotonic clock in seconds.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        *,
        ca: str,
        direct: Iterable[tuple[str, str]] = (),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.ca = ca
        self.direct = frozenset(direct)
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer through ``app``, then count the exchange."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        request_id_bytes = bind_request_id().encode("ascii")
        client = scope.get("client")
        bind_source(f"http {client[0]}" if client else "http unix")
        # Filled in by the use case once it has parsed the request's key fields: the
        # issuance is labelled without parsing its body again (a request refused before
        # that, as a bad body, still is, from the body).
        note = open_issuance_note()
        method, path = scope["method"], scope["path"]
        reads_body = method == "POST"
        received: list[bytes] = []
        status = 500
        reason: str | None = None
        reply: list[bytes] = []

        async def observed_receive() -> Message:
            message = await receive()
            if reads_body and message["type"] == "http.request":
                received.append(message.get("body", b""))
            return message

        async def observed_send(message: Message) -> None:
            nonlocal status, reason
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = message.get("headers", ())
                if status == 403:  # Only a denial's reason is counted (record_exchange).
                    for name, value in headers:
                        if name.lower() == b"x-nodecert-reason":
                            reason = value.decode("latin-1")
                message = {**message, "headers": [*headers, (b"x-request-id", request_id_bytes)]}
            elif (
                message["type"] == "http.response.body"
                and reads_body
                and status >= 400
                and sum(map(len, reply)) < _MAX_PROBLEM_BYTES
            ):
                reply.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, observed_receive, observed_send)
        finally:
            route = self._route(scope, method, path)
            record_exchange(
                self.metrics,
                Exchange(
                    route=route,
                    method=method,
                    status=status,
                    seconds=self.clock() - started,
                    request_body=(
                        b"".join(received) if route in ISSUANCE_ROUTES and note.key is None else b""
                    ),
                    key_type=note.key,
                    problem_body=b"".join(reply)[:_MAX_PROBLEM_BYTES],
                    reason=reason,
                ),
                ca=self.ca,
            )

    def _route(self, scope: Scope, method: str, path: str) -> str:
        if (method, path) in self.direct:
            return str(path)
        # Starlette's router records the matched route in the (shared) scope.
        template = getattr(scope.get("route"), "path", None)
        return template if isinstance(template, str) else "unmatched"
