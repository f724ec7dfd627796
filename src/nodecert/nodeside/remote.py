"""A node-side decision made by a nodecert service over HTTP, for nodes on other hosts.

:class:`AccessDecider` needs the ledger and the node directory; a node on another machine
has neither. :class:`RemoteDecider` asks the service instead, with the same
``POST /v1/authorize`` that nginx's ``auth_request`` uses, and the shared secret
(``NODECERT_AUTHORIZE_SECRET`` on the service). It needs only the standard library::

    from nodecert.verify import NodeAccessMiddleware, RemoteDecider

    decider = RemoteDecider("https://nodecert.internal:8443", secret=secret)
    app = NodeAccessMiddleware(app, decider=decider, node_id="n1")

It fails closed: a timeout, a refused connection, a redirect, a wrong secret or any
answer that is not a well-formed 200 or 403 denies (reason ``store_unavailable`` for
what the service could not answer). Positive answers may be cached for a few seconds
(``cache_ttl_s``, off by default), keyed on the certificate's exact bytes and the target
node together, so a cached allow is never reused for another certificate or node; a
revocation then takes up to ``cache_ttl_s`` to be seen. Denials are never cached.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from nodecert.core import problems
from nodecert.core.decision import AccessDeniedError
from nodecert.core.errors import NodecertError
from nodecert.core.identity import Identity
from nodecert.nodeside.access import Decision, DenyReason, load_certificate

__all__ = ["RemoteDecider"]

log = logging.getLogger("nodecert")

_MAX_REPLY_BYTES = 64 * 1024
_MAX_CACHE_TTL_S = 60.0


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would carry the shared secret to wherever it points: never follow one.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class RemoteDecider:
    """Makes the node-side decision by asking a nodecert service's ``/v1/authorize``.

    Args:
        url: The service's base URL (``https://…`` unless it is on loopback).
        secret: The service's ``NODECERT_AUTHORIZE_SECRET``; None only for a service on
            this machine reached over loopback.
        timeout_s: Bound on each call (connect and read); past it the request is denied.
        cache_ttl_s: Seconds a positive answer is reused for the same certificate and
            node (0, the default: never). At most 60.
        cache_size: Most positive answers kept.
        ssl_context: For an ``https`` URL: how to verify the service (default: the
            system's trust store).
        clock: Monotonic seconds, for the cache.

    Raises:
        ValueError: a URL that is not http(s), a secret for a plain http URL that is not
            on loopback, or a cache TTL outside 0-60 s.
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | None,
        timeout_s: float = 2.0,
        cache_ttl_s: float = 0.0,
        cache_size: int = 1024,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if "@" in parsed.netloc:
            # Not echoed: it would put the password in an exception and in every log line.
            raise ValueError("RemoteDecider: the URL carries a user name or password; pass secret=")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"RemoteDecider: {url[:200]!r} is not an http(s) URL")
        if secret is not None and parsed.scheme == "http" and not _is_loopback(parsed.hostname):
            raise ValueError(
                f"RemoteDecider: {url[:200]!r}: the shared secret goes over https only"
                " (plain http to loopback only)"
            )
        if not 0 <= cache_ttl_s <= _MAX_CACHE_TTL_S:
            raise ValueError("RemoteDecider: cache_ttl_s must be between 0 and 60 seconds")
        if timeout_s <= 0:
            raise ValueError("RemoteDecider: timeout_s must be positive")
        self.endpoint = url.rstrip("/") + "/v1/authorize"
        self._secret = secret
        self.timeout_s = timeout_s
        self.cache_ttl_s = cache_ttl_s
        self._cache_size = cache_size
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str], tuple[float, Decision]] = OrderedDict()
        self._lock = threading.Lock()
        handlers: list[urllib.request.BaseHandler] = [
            _NoRedirects(),
            # Environment proxies would see the secret: the service is called directly.
            urllib.request.ProxyHandler({}),
        ]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"RemoteDecider({self.endpoint!r}, cache_ttl_s={self.cache_ttl_s})"

    def decide(self, certificate: x509.Certificate | str | bytes, target_node: str) -> Decision:
        """Ask the service whether ``certificate`` may call ``target_node`` now. Never raises.

        Blocking network I/O: from an event loop, call it in a thread (the middleware does).
        """
        try:
            parsed = load_certificate(certificate)
        except Exception as exc:
            return Decision.deny(DenyReason.MALFORMED_CERTIFICATE, str(exc)[:200])
        pem = parsed.public_bytes(Encoding.PEM).decode("ascii")
        key = (hashlib.sha256(pem.encode()).hexdigest(), target_node)
        cached = self._cached(key)
        if cached is not None:
            return cached
        decision = self._ask(pem, target_node)
        if decision.allowed and self.cache_ttl_s > 0:
            with self._lock:
                self._cache[key] = (self._clock() + self.cache_ttl_s, decision)
                self._cache.move_to_end(key)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return decision

    def _cached(self, key: tuple[str, str]) -> Decision | None:
        if self.cache_ttl_s <= 0:
            return None
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if self._clock() >= entry[0]:
                del self._cache[key]
                return None
            return entry[1]

    def _ask(self, pem: str, target_node: str) -> Decision:
        headers = {
            "X-Client-Cert": urllib.parse.quote(pem),
            "X-Nodecert-Node": target_node,
            "Content-Length": "0",
        }
        if self._secret is not None:
            headers["X-Nodecert-Authorize-Secret"] = self._secret
        # The scheme was checked to be http(s) in __init__.
        request = urllib.request.Request(  # noqa: S310
            self.endpoint, data=b"", headers=headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as reply:
                return self._allowed(reply.status, reply.read(_MAX_REPLY_BYTES), target_node)
        except urllib.error.HTTPError as exc:
            with exc:
                body = exc.read(_MAX_REPLY_BYTES)
            if exc.code == 403:
                return self._denied(body)
            log.error("remote decider: %s answered %d: denying", self.endpoint, exc.code)
            return _unavailable(f"the nodecert service answered {exc.code}")
        except (OSError, ValueError) as exc:
            # URLError, timeouts, TLS failures, resets: fail closed.
            log.warning("remote decider: %s unreachable (%s): denying", self.endpoint, exc)
            return _unavailable("the nodecert service cannot be reached")

    @staticmethod
    def _allowed(status: int, body: bytes, target_node: str) -> Decision:
        try:
            data = json.loads(body)
            if status != 200 or data.get("allowed") is not True:
                raise ValueError("not an allow")
            identity = Identity(user_id=str(data["userId"]), node_id=str(data["nodeId"]))
            serial = str(data["serial"])
        except (ValueError, KeyError, TypeError, AttributeError, NodecertError):
            return _unavailable("the nodecert service gave a malformed answer")
        if identity.node_id != target_node:
            return _unavailable("the nodecert service answered for another node")
        return Decision(True, None, identity, serial, "allowed by the nodecert service")

    @staticmethod
    def _denied(body: bytes) -> Decision:
        # Read with the wire-error table, as the client reads it: the decision comes back
        # with the service's reason and detail.
        refusal = problems.parse(403, {}, body)
        if not isinstance(refusal, AccessDeniedError) or refusal.decision.reason is None:
            # A 403 without a reason: the service refused us (no secret, not loopback).
            log.error("remote decider: the nodecert service refused the call itself")
            return _unavailable("the nodecert service refused this node's call")
        return refusal.decision


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _unavailable(detail: str) -> Decision:
    return Decision.deny(DenyReason.STORE_UNAVAILABLE, detail)
