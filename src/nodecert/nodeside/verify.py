"""The node side for a node's own Python app: a check function and an ASGI middleware.

Both apply the very same decision as the API Gateway authorizer and ``POST /v1/authorize``
(:class:`~nodecert.nodeside.access.AccessDecider`). Usage::

    from nodecert.nodeside.verify import NodeAccessMiddleware

    app = NodeAccessMiddleware(app, decider=decider, node_id="node-1")

The client certificate is taken from, in order:

1. the ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``), when the
   ASGI server terminates mutual TLS itself and implements the extension;
2. a header set by a trusted reverse proxy (default ``X-Client-Cert``, holding nginx's
   ``$ssl_client_escaped_cert``), but only when the direct peer is one of
   ``trusted_proxies``: anyone else could simply send that header.

A denied request gets a 403 ``application/problem+json`` with ``code`` ``access_denied``
and the stable reason; an allowed one reaches the app with the :class:`Decision` in
``scope["nodecert.decision"]`` (and ``request.state.nodecert`` under Starlette).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Callable, Collection, MutableMapping
from typing import Any, Protocol

from cryptography import x509

from nodecert.core.identity import Identity
from nodecert.nodeside.access import AccessDeniedError, Decision, DenyReason
from nodecert.nodeside.remote import RemoteDecider

__all__ = [
    "Decider",
    "NodeAccessMiddleware",
    "RemoteDecider",
    "client_certificate_from_scope",
    "verify_client",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[MutableMapping[str, Any]], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]


class Decider(Protocol):
    """Anything that makes the node-side decision (an :class:`AccessDecider`)."""

    def decide(self, certificate: x509.Certificate | str | bytes, target_node: str) -> Decision:
        """Decide whether ``certificate`` may call ``target_node`` now; never raises."""
        ...


def verify_client(
    certificate: x509.Certificate | str | bytes | None, *, node_id: str, decider: Decider
) -> Identity:
    """Check a peer certificate for ``node_id`` and return who is calling.

    Args:
        certificate: The peer certificate (parsed, PEM, or DER as from
            ``ssl.SSLSocket.getpeercert(binary_form=True)``), or None if there was none.
        node_id: This node.
        decider: The decision maker.

    Raises:
        AccessDeniedError: carrying the :class:`Decision` with the reason.
    """
    if certificate is None:
        raise AccessDeniedError(Decision.deny(DenyReason.NO_CERTIFICATE, "no client certificate"))
    decision = decider.decide(certificate, node_id)
    if not decision.allowed or decision.identity is None:
        raise AccessDeniedError(decision)
    return decision.identity


def client_certificate_from_scope(
    scope: Scope, *, header: str = "x-client-cert", trusted_proxies: Collection[str] = ()
) -> str | None:
    """The client certificate PEM of an ASGI request, or None.

    The TLS extension wins; the proxy header counts only when the direct peer's address
    is in ``trusted_proxies``.

    Raises:
        AccessDeniedError: the proxy header is there more than once (reason
            ``malformed_certificate``): a proxy that appends its copy after the client's
            instead of replacing it would otherwise let the client's copy speak.
    """
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain")
    if chain:
        first = next(iter(chain), None)
        if isinstance(first, str) and first:
            return first
    client = scope.get("client")
    if not client or client[0] not in trusted_proxies:
        return None
    wanted = header.lower().encode("latin-1")
    values = [value for name, value in scope.get("headers", ()) if name.lower() == wanted]
    if len(values) > 1:
        raise AccessDeniedError(
            Decision.deny(DenyReason.MALFORMED_CERTIFICATE, f"{header}: sent more than once")
        )
    if not values or not values[0]:
        return None
    return urllib.parse.unquote(values[0].decode("latin-1"))


class NodeAccessMiddleware:
    """ASGI middleware that lets a request through only for an allowed client certificate.

    Args:
        app: The node's ASGI app.
        decider: The decision maker (an :class:`~nodecert.nodeside.access.AccessDecider`).
        node_id: This node's id, or a function of the scope returning the target node
            (for example from the path); None from it denies.
        trusted_proxies: Peer addresses whose certificate header is believed.
        header: The header a trusted proxy puts the (URL-escaped) PEM in.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        decider: Decider,
        node_id: str | Callable[[Scope], str | None],
        trusted_proxies: Collection[str] = (),
        header: str = "x-client-cert",
    ) -> None:
        self.app = app
        self.decider = decider
        self.node_id = node_id
        self.trusted_proxies = frozenset(trusted_proxies)
        self.header = header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Decide, then call the app or answer 403."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            certificate = client_certificate_from_scope(
                scope, header=self.header, trusted_proxies=self.trusted_proxies
            )
        except AccessDeniedError as exc:
            await self._deny(scope, send, exc.decision)
            return
        target = self.node_id(scope) if callable(self.node_id) else self.node_id
        if certificate is None:
            decision = Decision.deny(DenyReason.NO_CERTIFICATE, "no client certificate")
        elif target is None:
            decision = Decision.deny(DenyReason.INVALID_TARGET, "no target node")
        else:
            # The decision reads the store; keep that I/O off the event loop.
            decision = await asyncio.to_thread(self.decider.decide, certificate, target)
        if not decision.allowed:
            await self._deny(scope, send, decision)
            return
        scope["nodecert.decision"] = decision
        state = scope.setdefault("state", {})
        if isinstance(state, dict):
            state["nodecert"] = decision
        await self.app(scope, receive, send)

    @staticmethod
    async def _deny(scope: Scope, send: Send, decision: Decision) -> None:
        if scope["type"] == "websocket":
            # RFC 6455 section 7.4.1: 1008 is "policy violation".
            await send({"type": "websocket.close", "code": 1008})
            return
        reason = decision.reason.value if decision.reason else "denied"
        body = json.dumps(
            {
                "type": "https://nodecert.dev/problems/access_denied",
                "title": "Access denied",
                "status": 403,
                "detail": f"certificate: {reason}",
                "code": "access_denied",
                "reason": reason,
            },
            separators=(",", ":"),
        ).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})
