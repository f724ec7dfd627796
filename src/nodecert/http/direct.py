"""ASGI pieces under the FastAPI app: rendering, the route runner, the body limit, direct routes.

``POST /generate-cert`` is the route every node connection sets up goes through. FastAPI's
stack (its telemetry and body-limit middlewares, Starlette's error and exception
middlewares, routing, dependency solving, the request object) costs more CPU than issuing
an EC certificate itself (docs/performance.md). Its row in :data:`nodecert.http.api.ROUTES`
says so (:attr:`~nodecert.http.api.Runs.DIRECT`), and :class:`NodecertAPI` answers it from
a :class:`DirectEndpoint` before that stack, with the very same functions the framework
route uses (same body limit, same :class:`Runner`, same error replies, same rendering), so
a reply is byte for byte the one FastAPI would have sent. The route stays declared on the
FastAPI app, for ``/openapi.json``.

The :class:`Runner` is also the one place that knows the ledger may batch commits: the
certificate's row is handed over, the event loop serves other requests while it is on its
way to disk (SQLite puts every row that arrives meanwhile into one transaction, one
fsync), and the reply leaves only once it is durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nodecert.core.errors import InvalidRequestError, PayloadTooLargeError
from nodecert.core.values import Commit
from nodecert.http.api import Handlers, Route, Runs
from nodecert.http.call import Call, single_header
from nodecert.http.contract import (
    Reply,
    error_reply,
    issued_reply,
    problem,
    repeated_query_parameter,
)
from nodecert.http.routes import Issuance, log_issued
from nodecert.issuing.authority import IssuedCertificate
from nodecert.support.blocking import WouldBlockError, never_wait

__all__ = ["BodyLimit", "DirectEndpoint", "NodecertAPI", "Runner", "render", "send_reply"]

log = logging.getLogger("nodecert")


def render(reply: Reply) -> Response:
    """The Starlette response for ``reply``."""
    return Response(
        content=reply.encoded() if reply.status != 204 else None,
        status_code=reply.status,
        headers=reply.headers,
        media_type=reply.media_type,
    )


async def send_reply(reply: Reply, send: Send) -> None:
    """Send ``reply`` as :func:`render`'s response would, without making one.

    The same two ASGI messages, headers in the same order (``Response.init_headers``):
    the reply's own, then the length and the type unless it set them (the length never
    for a 204). A test holds the two to the same messages.
    """
    body = reply.encoded() if reply.status != 204 else b""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    if reply.headers:
        names = {name for name, _ in headers}
        length, kind = b"content-length" not in names, b"content-type" not in names
    else:
        length = kind = True
    if length and reply.status >= 200 and reply.status not in (204, 304):
        headers.append((b"content-length", str(len(body)).encode("latin-1")))
    media_type = reply.media_type
    if kind:
        if media_type.startswith("text/") and "charset=" not in media_type.lower():
            media_type += "; charset=utf-8"
        headers.append((b"content-type", media_type.encode("latin-1")))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


Begun = tuple[Issuance, IssuedCertificate, Commit]


class Runner:
    """Answers a row of :data:`~nodecert.http.api.ROUTES` from its raw input.

    The row says who may call it and where it runs (:class:`~nodecert.http.api.Runs`):
    in the thread pool when it may wait, on the event loop when it reads memory only.
    A :attr:`~nodecert.http.api.Runs.DIRECT` row's issuance runs on the event loop when
    ``inline_issuance`` (an EC or CSR issuance: well under a millisecond of CPU, never
    waiting on the network, as the hop to the thread pool and back costs about a third of
    such a request, docs/performance.md), in the thread pool otherwise (RSA key
    generation, a remote CA). Either way the ledger's
    :class:`~nodecert.core.values.Commit` is awaited on the loop, which serves other
    requests meanwhile; when it fails, the certificate is dropped and the error answered.

    Args:
        handlers: The service's route classes.
        inline_issuance: Whether issuance may run on the event loop (bootstrap decides
            it from what the parts declare: the CA, the ledger, the issuer's keys).
    """

    def __init__(self, handlers: Handlers, *, inline_issuance: bool) -> None:
        self.handlers = handlers
        self.inline_issuance = inline_issuance

    async def answer(
        self,
        route: Route,
        headers: Headers,
        body: bytes,
        *,
        params: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        peer: str | None = None,
    ) -> Reply:
        """The reply of ``route`` to one request.

        Raises:
            NodecertError: the request is refused (rendered by the caller).
        """
        authenticated = route.access.authenticated
        authorization = single_header(headers, "Authorization") if authenticated else None
        for name in route.headers:
            single_header(headers, name)

        def call() -> Reply | Issuance:
            caller = self.handlers.user.authenticate(authorization) if authenticated else None
            return route.call(
                self.handlers, Call(headers, body, params or {}, query or {}, caller, peer)
            )

        if route.runs is Runs.LOOP:
            outcome = _begin(call)
        elif route.runs is Runs.DIRECT and self.inline_issuance:
            outcome = await _inline(call)
        else:
            outcome = await run_in_threadpool(_begin, call)
        if isinstance(outcome, Reply):
            return outcome
        _, issued, commit = outcome
        reply = issued_reply(issued)  # Built while the row is on its way to disk.
        await commit
        # Logged once durable, so the log never names a certificate that was dropped.
        log_issued(issued.record)
        return reply


def _begin(call: Callable[[], Reply | Issuance]) -> Reply | Begun:
    result = call()
    if isinstance(result, Issuance):
        return (result, *result.start())
    return result


async def _inline(call: Callable[[], Reply | Issuance]) -> Reply | Begun:
    # The request is read once; only its signing may move to the thread pool.
    result: Reply | Issuance | None = None
    try:
        with never_wait():
            result = call()
            if not isinstance(result, Issuance):
                return result
            if not result.makes_rsa_key:
                return (result, *result.start())
    except WouldBlockError:
        # Something on the way would have waited (a SQLite lock held by another worker):
        # nothing was done yet, so run it again where waiting is fine.
        if not isinstance(result, Issuance):
            return await run_in_threadpool(_begin, call)
    else:
        # An RSA key (made here when the pool is empty) would hold the loop for tens of ms.
        return (result, *await run_in_threadpool(result.start))
    # The other worker holds its lock for one short write: yield the loop to the other
    # requests a moment and ask again before moving the issuance to the thread pool (the
    # hop there and back costs more CPU than the issuance itself).
    for pause in _LOCK_PAUSES_S:
        await asyncio.sleep(pause)
        try:
            with never_wait():
                return (result, *result.start())
        except WouldBlockError:
            continue
    return (result, *await run_in_threadpool(result.start))


# How long an issuance that met another worker's lock yields the loop before each new try.
_LOCK_PAUSES_S = (0.0002, 0.001)


class NodecertAPI(FastAPI):
    """FastAPI, plus ``direct``: endpoints by (method, path) answered ahead of its stack.

    ``observer``, when set, wraps every HTTP request (direct ones included): the request id
    and the metrics (:class:`nodecert.http.observe.ObservedApp`).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direct: dict[tuple[str, str], DirectEndpoint] = {}
        self.observer: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer through the observer when there is one."""
        if self.observer is not None and scope["type"] == "http":
            await self.observer(scope, receive, send)
        else:
            await self.dispatch(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a direct route, or hand the request to FastAPI.

        A query parameter given twice is refused here, for every route (as by the Lambda
        front end, :mod:`nodecert.aws.events`).
        """
        if scope["type"] == "http":
            # Starlette reads the query string the same way (latin-1, then percent-decoded).
            query = scope.get("query_string", b"").decode("latin-1")
            if query and (name := repeated_query_parameter(query)) is not None:
                error = InvalidRequestError(f"{name[:40]}: sent more than once")
                await render(problem(error, instance=scope["path"]))(scope, receive, send)
                return
            endpoint = self.direct.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class DirectEndpoint:
    """An ASGI endpoint: read the body (within the limit), call ``handler``, render.

    Args:
        handler: Answers the request headers and body; raises ``NodecertError`` (or
            anything, answered as a 500) on failure.
        max_body_bytes: Bodies over this are refused with 413, as by :class:`BodyLimit`.
    """

    def __init__(
        self, handler: Callable[[Headers, bytes], Awaitable[Reply]], *, max_body_bytes: int
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one HTTP request."""
        if _declared_too_large(scope, self.max_body_bytes):
            await _refuse(scope, send, self.max_body_bytes)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # Nobody to answer; as in http/app.py, one INFO line and no traceback.
                log.info(
                    "client hung up before sending the whole body of %s %r",
                    scope["method"],
                    scope["path"][:200],
                )
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body_bytes:
                await _refuse(scope, send, self.max_body_bytes)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        try:
            reply = await self.handler(Headers(scope=scope), b"".join(chunks))
        except Exception as exc:  # Every failure gets its problem document.
            reply = error_reply(exc, scope["method"], scope["path"])
        await send_reply(reply, send)


class _BodyTooLargeError(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes``, without reading them whole.

    A declared ``Content-Length`` over the limit is refused before any byte is read; a
    chunked body is counted as it streams and refused as soon as it crosses the limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting its body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_too_large(scope, self.max_bytes):
            await _refuse(scope, send, self.max_bytes)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLargeError:
            if not started:
                await _refuse(scope, send, self.max_bytes)


def _declared_too_large(scope: Scope, max_bytes: int) -> bool:
    declared = dict(scope["headers"]).get(b"content-length")
    # bytes.isdigit() is ASCII only; the length cap keeps int() from a thousand digits.
    return declared is not None and (
        not declared.isdigit() or len(declared) > 18 or int(declared) > max_bytes
    )


async def _refuse(scope: Scope, send: Send, max_bytes: int) -> None:
    reply = problem(
        PayloadTooLargeError(f"body: larger than {max_bytes} bytes"), instance=scope.get("path")
    )
    headers = [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
    headers.append((b"content-type", reply.media_type.encode()))
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": reply.encoded()})
