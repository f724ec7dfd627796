"""The node side for a node's own Python app: a check function and an ASGI middleware.

Both apply the very same decision as the API Gateway authorizer and ``POST /v1/authorize``
(:class:`~nodecert.nodeside.access.AccessDecider`). Usage::

    from nodecert.nodeside.verify import NodeAccessMiddleware

    app = NodeAccessMiddleware(app, decider=decider, node_id="node-1")

The client certificate is taken from, in order:

1. the ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``), when the
   ASGI server terminates mutual TLS itself and implements the extension;
2. a header set by a reverse proxy (default ``X-Client-Cert``, holding nginx's
   ``$ssl_client_escaped_cert``), but only from a proxy that proved itself: anyone else
   could simply send that header, and a certificate is public. The proxy proves itself by
   where it connects from (``trusted_proxies``: peer addresses, or :data:`UNIX_SOCKET` for
   a peer on the Unix socket the ASGI server listens on), by a shared secret it sends in
   ``X-Nodecert-Proxy-Secret`` (``proxy_secret``, compared in constant time), or both. A
   loopback address alone admits every process on the host; a Unix socket in a directory
   only the proxy's group may enter, or the secret, admits the proxy only.

A denied request gets a 403 ``application/problem+json`` with ``code`` ``access_denied``
and the stable reason; an allowed one reaches the app with the :class:`Decision` in
``scope["nodecert.decision"]`` (and ``request.state.nodecert`` under Starlette).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Collection, MutableMapping
from typing import Any, Protocol

from cryptography import x509

from nodecert.core import problems
from nodecert.core.identity import Identity
from nodecert.nodeside.access import AccessDeniedError, Decision, DenyReason
from nodecert.nodeside.remote import RemoteDecider

__all__ = [
    "PROXY_SECRET_HEADER",
    "UNIX_SOCKET",
    "Decider",
    "NodeAccessMiddleware",
    "RemoteDecider",
    "client_certificate_from_scope",
    "verify_client",
]

log = logging.getLogger("nodecert")

UNIX_SOCKET = "unix"
"""In ``trusted_proxies``: a peer on the ASGI server's Unix socket (``server`` is
``[path, None]`` in the scope, as the ASGI spec says for Unix sockets; uvicorn ``--uds``)."""
PROXY_SECRET_HEADER = "x-nodecert-proxy-secret"  # noqa: S105 - a header name, not a secret
_MIN_SECRET = 16

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
    scope: Scope,
    *,
    header: str = "x-client-cert",
    trusted_proxies: Collection[str] = (),
    proxy_secret: str | None = None,
    secret_header: str = PROXY_SECRET_HEADER,
) -> str | None:
    """The client certificate PEM of an ASGI request, or None.

    The TLS extension wins; the proxy header counts only when the proxy proved itself:
    the direct peer is in ``trusted_proxies`` (when any are given) and the request carries
    ``proxy_secret`` once in ``secret_header`` (when a secret is given). With neither, the
    header never counts.

    Raises:
        AccessDeniedError: the proxy header is there more than once (reason
            ``malformed_certificate``): a proxy that appends its copy after the client's
            instead of replacing it would otherwise let the client's copy speak.
        ValueError: ``proxy_secret`` is shorter than 16 characters or not printable ASCII
            (an empty one would be proven by an empty header).
    """
    _check_secret(proxy_secret)
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain")
    if chain:
        first = next(iter(chain), None)
        if isinstance(first, str) and first:
            return first
    if not _proxy_proven(scope, trusted_proxies, proxy_secret, secret_header):
        return None
    values = _header_values(scope, header)
    if len(values) > 1:
        raise AccessDeniedError(
            Decision.deny(DenyReason.MALFORMED_CERTIFICATE, f"{header}: sent more than once")
        )
    if not values or not values[0]:
        return None
    return urllib.parse.unquote(values[0].decode("latin-1"))


def _header_values(scope: Scope, name: str) -> list[bytes]:
    wanted = name.lower().encode("latin-1")
    return [value for key, value in scope.get("headers", ()) if key.lower() == wanted]


def _on_unix_socket(scope: Scope) -> bool:
    server = scope.get("server")
    return (
        isinstance(server, tuple | list)
        and len(server) == 2
        and isinstance(server[0], str)
        and server[1] is None
        and not scope.get("client")
    )


def _proxy_proven(
    scope: Scope, trusted: Collection[str], secret: str | None, secret_header: str
) -> bool:
    if trusted:
        client = scope.get("client")
        by_address = client is not None and len(client) > 0 and client[0] in trusted
        if not (by_address or (UNIX_SOCKET in trusted and _on_unix_socket(scope))):
            return False
    if secret is None:
        return bool(trusted)
    given = _header_values(scope, secret_header)
    # Both sides are bytes of the same kind; compare_digest takes time independent of
    # where they differ. A repeated header proves nothing, whichever copy is right.
    return len(given) == 1 and hmac.compare_digest(given[0], secret.encode("latin-1"))


def _check_secret(secret: str | None) -> None:
    if secret is None:
        return
    if len(secret) < _MIN_SECRET or not all(33 <= ord(c) <= 126 for c in secret):
        # Never echo it: the message may reach a log.
        raise ValueError(
            f"proxy_secret: must be at least {_MIN_SECRET} printable ASCII characters"
            " without spaces (e.g. `openssl rand -hex 32`)"
        )


class NodeAccessMiddleware:
    """ASGI middleware that lets a request through only for an allowed client certificate.

    Args:
        app: The node's ASGI app.
        decider: The decision maker (an :class:`~nodecert.nodeside.access.AccessDecider`).
        node_id: This node's id, or a function of the scope returning the target node
            (for example from the path); None from it denies.
        trusted_proxies: Peer addresses whose certificate header is believed, or
            :data:`UNIX_SOCKET` for a peer on the server's Unix socket.
        proxy_secret: A secret the proxy sends in ``secret_header`` (at least 16
            printable ASCII characters); when given, the certificate header is believed
            only with it (and, if ``trusted_proxies`` is given too, only from them). The
            header is removed from the scope before the app sees it.
        header: The header a trusted proxy puts the (URL-escaped) PEM in.
        secret_header: The header the proxy sends ``proxy_secret`` in.

    Raises:
        ValueError: ``proxy_secret`` is too short or not printable ASCII.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        decider: Decider,
        node_id: str | Callable[[Scope], str | None],
        trusted_proxies: Collection[str] = (),
        proxy_secret: str | None = None,
        header: str = "x-client-cert",
        secret_header: str = PROXY_SECRET_HEADER,
    ) -> None:
        _check_secret(proxy_secret)
        self.app = app
        self.decider = decider
        self.node_id = node_id
        self.trusted_proxies = frozenset(trusted_proxies)
        self._proxy_secret = proxy_secret
        self.header = header
        self.secret_header = secret_header
        self._unexpected_secret = threading.Event()

    def __repr__(self) -> str:
        # The secret never appears in a repr (a debugger, a log of the app object).
        return (
            f"NodeAccessMiddleware(node_id={self.node_id!r},"
            f" trusted_proxies={sorted(self.trusted_proxies)!r},"
            f" proxy_secret={'set' if self._proxy_secret else None})"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Decide, then call the app or answer 403."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            certificate = client_certificate_from_scope(
                scope,
                header=self.header,
                trusted_proxies=self.trusted_proxies,
                proxy_secret=self._proxy_secret,
                secret_header=self.secret_header,
            )
        except AccessDeniedError as exc:
            await self._deny(scope, send, exc.decision)
            return
        self._drop_secret_header(scope)
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

    def _drop_secret_header(self, scope: Scope) -> None:
        # The app behind (and whatever it logs) never sees the proxy's secret.
        wanted = self.secret_header.lower().encode("latin-1")
        headers = list(scope.get("headers", ()))
        kept = [(name, value) for name, value in headers if name.lower() != wanted]
        if len(kept) == len(headers):
            return
        scope["headers"] = kept
        if self._proxy_secret is None and not self._unexpected_secret.is_set():
            self._unexpected_secret.set()
            log.warning(
                "nodecert.verify: a request brings %s, but this middleware has no"
                " proxy_secret to check it against; set one, or stop sending it",
                self.secret_header,
            )

    @staticmethod
    async def _deny(scope: Scope, send: Send, decision: Decision) -> None:
        if scope["type"] == "websocket":
            # RFC 6455 section 7.4.1: 1008 is "policy violation".
            await send({"type": "websocket.close", "code": 1008})
            return
        # The reason alone, not the decision's detail: the caller learns why, not what the
        # ledger holds. The document is the wire-error table's, as the service sends it.
        reason = decision.reason.value if decision.reason else "denied"
        refusal = AccessDeniedError(Decision(False, decision.reason, detail=reason))
        body = json.dumps(problems.render(refusal).body, separators=(",", ":")).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})
