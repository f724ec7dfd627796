"""``nodecert serve``: uvicorn on a listening socket that nodecert binds itself.

Three things stock uvicorn does not do are done here:

- TCP_NODELAY. uvicorn binds its socket with ``socket.socket(family, SOCK_STREAM)``
  (protocol 0) when it runs several workers, and asyncio only sets TCP_NODELAY on sockets
  whose ``proto`` is IPPROTO_TCP (uvicorn issue #3149). Without it every response after the
  first on a kept-alive connection waits for the client's delayed ACK: ~40 ms per request.
  Binding the socket here with an explicit IPPROTO_TCP fixes it for one worker and many.
- A bound on the request line and headers. uvicorn's httptools parser accepts headers of
  any size (a 10 MB header is read into memory whole); :class:`BoundedHttpToolsProtocol`
  answers 431 once they pass ``NODECERT_MAX_HEADER_BYTES``, before the application runs.
- Deadlines for slow clients. uvicorn times out idle kept-alive connections only: a
  request head or body left unfinished held its connection for ever, and enough of them
  exhausted the descriptors. :class:`BoundedHttpToolsProtocol` gives the head
  ``NODECERT_HEAD_TIMEOUT_S`` from the connection (or the request's first byte) and the
  body ``NODECERT_BODY_TIMEOUT_S`` from the end of the head, then answers 408 and closes;
  beyond ``NODECERT_LIMIT_CONCURRENCY`` connections per worker, uvicorn answers 503.
- Framing llhttp lets through (:func:`framing_refusal`): a ``Transfer-Encoding`` other than
  exactly ``chunked`` is a 501 and a request without exactly one valid ``Host`` a 400,
  before the application runs (llhttp read ``gzip, chunked`` as chunked, coding ignored).
- With several workers on Linux, a listening socket per worker (``SO_REUSEPORT``), so the
  kernel spreads connections over the workers (``server/supervisor.py``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, NoReturn

import uvicorn

from nodecert.core.config import Settings
from nodecert.core.errors import ConfigurationError, NodecertError
from nodecert.http.contract import (
    HeadersTooLargeError,
    MalformedRequestError,
    OverloadedError,
    RequestTimeoutError,
    UnsupportedTransferCodingError,
    problem,
)
from nodecert.server.draining import DrainingHttpToolsProtocol
from nodecert.server.https import HTTPSConfig, check_files, tls_files
from nodecert.server.supervisor import SpreadingSupervisor, reuse_port_available
from nodecert.support.blocking import count_requests_in
from nodecert.support.logs import uvicorn_log_config
from nodecert.support.metrics import prepare_multiprocess

__all__ = [
    "GRACEFUL_SHUTDOWN_S",
    "BoundedHttpToolsProtocol",
    "bind",
    "framing_refusal",
    "run",
    "worker_sockets",
]

_BACKLOG = 2048  # uvicorn's default.
# SIGTERM (and a SIGHUP's retiring workers) let requests in flight finish for this long,
# then cancel them: a shutdown is bounded whatever the clients do. Below the workers'
# backstop (server/lifeline.py) and the systemd unit's TimeoutStopSec.
GRACEFUL_SHUTDOWN_S = 25


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port`` whose accepted connections get TCP_NODELAY.

    With ``reuse_port``, the socket joins the port's ``SO_REUSEPORT`` group (see
    :func:`worker_sockets`).

    Raises:
        ConfigurationError: the address cannot be resolved or is in use.
    """
    sock: socket.socket | None = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise ConfigurationError(
            f"NODECERT_HOST/NODECERT_PORT: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    sock.set_inheritable(True)
    return sock


def worker_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one port, in one ``SO_REUSEPORT`` group (Linux).

    Raises:
        ConfigurationError: the address is taken, or cannot be bound.
    """
    # A socket with SO_REUSEPORT joins any group of the same user already on the port,
    # silently sharing its traffic: a second nodecert started by mistake would get half of
    # the first one's connections. A plain bind first turns that into "in use".
    bind(host, port).close()
    first = bind(host, port, reuse_port=True)
    chosen = int(first.getsockname()[1])  # Port 0 picks one; the others must share it.
    sockets = [first]
    try:
        sockets.extend(bind(host, chosen, reuse_port=True) for _ in range(count - 1))
    except ConfigurationError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _RefusedError(Exception):
    """Raised in a parser callback: uvicorn answers through ``send_400_response``."""


# RFC 9112 section 3.2 and RFC 3986 section 3.2.2: uri-host [ ":" port ], or empty.
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(:[0-9]*)?")


def framing_refusal(http_version: str, headers: list[tuple[bytes, bytes]]) -> NodecertError | None:
    """What is wrong with a request head's framing, or None: the checks llhttp leaves out.

    - ``Transfer-Encoding`` other than exactly ``chunked`` (RFC 9112 section 6.1: a coding
      the server does not understand is a 501). llhttp reads ``gzip, chunked`` as chunked
      and hands the application the still-encoded body, so the coding is ignored.
    - ``Transfer-Encoding`` on HTTP/1.0 (RFC 9112 section 6.1: faulty framing, 400).
    - Not exactly one ``Host`` on HTTP/1.1, more than one on any version, or one that is
      not a host and port (RFC 9112 section 3.2: 400).

    Args:
        http_version: ``"1.1"`` or ``"1.0"``.
        headers: The head's fields, names in lower case.
    """
    codings = [
        coding.strip().lower()
        for name, value in headers
        if name == b"transfer-encoding"
        for coding in value.split(b",")
    ]
    if codings and http_version != "1.1":
        # RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding is faulty framing.
        return MalformedRequestError("Transfer-Encoding: not allowed before HTTP/1.1")
    if codings and codings != [b"chunked"]:
        shown = b", ".join(codings).decode("latin-1")[:60]
        return UnsupportedTransferCodingError(
            f"Transfer-Encoding: {shown!r} is not supported (only 'chunked', alone)"
        )
    hosts = [value for name, value in headers if name == b"host"]
    if len(hosts) > 1 or (http_version == "1.1" and not hosts):
        return MalformedRequestError(
            f"Host: an HTTP/{http_version} request needs exactly one, got {len(hosts)}"
        )
    if hosts and not _HOST.fullmatch(hosts[0]):
        return MalformedRequestError("Host: not a host name or address with an optional port")
    return None


_PARSER_REFUSAL = "Invalid HTTP request received."


class _RefusalsAtInfo(logging.LoggerAdapter):  # type: ignore[type-arg]
    """uvicorn's ``uvicorn.error`` logger without its WARNING for each refused request.

    uvicorn warns once per request its parser refuses: anyone who can open a connection
    could fill the log at WARNING. :meth:`BoundedHttpToolsProtocol.send_400_response`
    logs each refusal as one INFO line instead, with its status and code.
    """

    @property
    def level(self) -> int:
        """The logger's own level: uvicorn compares it with its TRACE level."""
        return int(self.logger.level)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if msg != _PARSER_REFUSAL:
            self.logger.warning(msg, *args, **kwargs)


class BoundedHttpToolsProtocol(DrainingHttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded head, and deadlines for head and body.

    The limits are class attributes because uvicorn creates the protocol itself; each
    worker process sets them from its settings when it builds the application
    (``nodecert.server.asgi.create_app``).
    """

    max_header_bytes = 32 * 1024
    head_timeout_s = 10.0
    body_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The ledger's group commit holds a row's commit back for the requests that arrived
        # with it only when there are any (support.blocking.when_loop_yields).
        count_requests_in(self.tasks)
        self.logger = _RefusalsAtInfo(self.logger, {})  # type: ignore[assignment]
        self._head_bytes = 0
        self._refusal: NodecertError | None = None
        # The current phase's deadline (loop time), and one timer that fires at or before
        # it. Moving a deadline later only changes the number: the timer, when it fires,
        # looks again. So a request costs no timer of its own; a connection has one timer
        # at a time, started about once per head_timeout_s (see _arm).
        self._deadline_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head's deadline: a client that sends nothing is closed too."""
        super().connection_made(transport)
        self._arm(self.head_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadline and its timer with the connection."""
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        if self._deadline_at is None:
            # A kept-alive connection: uvicorn's keep-alive timeout covered the idle wait.
            self._arm(self.head_timeout_s)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """The head is in: the body's deadline starts (ended by :meth:`on_message_complete`).

        Beyond ``limit_concurrency``, uvicorn answers a plain-text 503; here the request is
        answered by :func:`_overloaded` instead, a problem document with ``Retry-After``.
        A head whose framing :func:`framing_refusal` refuses never reaches the application.
        """
        error = framing_refusal(self.parser.get_http_version(), self.headers)
        if error is not None:
            self._refusal = error
            raise _RefusedError
        self._arm(self.body_timeout_s)
        limit = self.limit_concurrency
        if limit is None or (len(self.connections) < limit and len(self.tasks) < limit):
            super().on_headers_complete()
            return
        self.logger.warning("Exceeded concurrency limit.")
        app = self.app
        self.app, self.limit_concurrency = _overloaded, None
        try:
            super().on_headers_complete()
        finally:
            self.app, self.limit_concurrency = app, limit

    def on_message_complete(self) -> None:
        """The whole request is in: no deadline until the next one begins."""
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        at = self.loop.time() + seconds
        self._deadline_at = at
        if self._timer is not None:
            if self._timer_at <= at:
                return  # It fires first, and looks again then.
            self._timer.cancel()
        self._timer, self._timer_at = self.loop.call_at(at, self._check_deadline), at

    def _disarm(self) -> None:
        self._deadline_at = None  # The timer, if any, finds nothing to do.

    def _check_deadline(self) -> None:
        self._timer = None
        at = self._deadline_at
        if at is None:
            return
        # uvloop's timers and clock have millisecond steps: within one, the time is up.
        if self.loop.time() + 0.001 < at:  # The deadline moved on since the timer started.
            self._timer, self._timer_at = self.loop.call_at(at, self._check_deadline), at
            return
        self._deadline_at = None
        self._timed_out()

    def _timed_out(self) -> None:
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self._write_problem(RequestTimeoutError("request: not received in time"))
        if cycle is not None and not cycle.response_complete:
            # The application may be waiting for the rest of the body: it sees a
            # disconnect, and whatever it answers later is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.max_header_bytes:
            self._refuse_head()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Counted here rather than in a helper: this runs for every header of every request.
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.max_header_bytes:
            self._refuse_head()
        super().on_header(name, value)

    def _refuse_head(self) -> NoReturn:
        self._refusal = HeadersTooLargeError(f"headers: larger than {self.max_header_bytes} bytes")
        # Raised inside the parser's callback: uvicorn turns it into an answer through
        # send_400_response, below, and closes the connection.
        raise _RefusedError

    def send_400_response(self, msg: str) -> None:
        """A problem document for what the parser refused, then close: 400, 431 or 501.

        One INFO line says so (the client's address, the status and the code, none of the
        request's bytes): a refusal is the client's mistake, not the operator's.
        """
        error = self._refusal
        if error is None:
            # llhttp refuses, among others, Transfer-Encoding with Content-Length, two
            # Content-Lengths, folded or NUL-bearing headers and bare LFs (request
            # smuggling); whatever followed on the connection is never read.
            error = MalformedRequestError("request: not a well-formed HTTP/1.1 request")
        status = self._write_problem(error)
        client = "{}:{}".format(*self.client) if self.client else "a client"
        self.logger.info("refused a request from %s: %d %s", client, status, error.code)
        self.transport.close()

    def _write_problem(self, error: NodecertError) -> int:
        """Write ``error``'s problem document; return its status."""
        # The status (and its line) is the wire-error table's, as for every other answer.
        reply = problem(error)
        body = reply.encoded()
        status_line = f"{reply.status} {HTTPStatus(reply.status).phrase}".encode()
        self.transport.write(
            b"HTTP/1.1 " + status_line + b"\r\n"
            b"content-type: application/problem+json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        return reply.status


async def _overloaded(scope: Any, receive: Any, send: Any) -> None:
    reply = problem(OverloadedError("server: too many connections, try again shortly"))
    body = reply.encoded()
    headers = [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
    headers += [
        (b"content-type", reply.media_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def run(settings: Settings, *, on_listening: Callable[[], None] = lambda: None) -> None:
    """Serve the HTTP API with ``settings.workers`` processes until interrupted.

    ``on_listening`` is called once the port is bound, before the workers start.

    Raises:
        ConfigurationError: the address cannot be bound, the TLS files
            (``NODECERT_TLS_CERT``/``NODECERT_TLS_KEY``) cannot be used, or a worker failed
            to start (the supervisor then stopped the others).
    """
    if settings.metrics == "on":
        # Before any worker (or this process) imports prometheus-client: every worker
        # writes its counts there and GET /metrics adds them up.
        prepare_multiprocess()
    check_files(settings)  # A TLS mistake is one line here, not a traceback per worker.
    config = HTTPSConfig(
        "nodecert.server.asgi:create_app",
        tls=tls_files(settings),
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(settings.log_level, settings.log_format)
        or uvicorn.config.LOGGING_CONFIG,
        http=BoundedHttpToolsProtocol,
        limit_concurrency=settings.limit_concurrency,
        # nodecert never rewrites the peer address from X-Forwarded-For: /v1/authorize's
        # loopback trust must rest on the socket (and the request is refused anyway when
        # such a header is present, see http/nodeside_routes.py).
        proxy_headers=False,
        # No "Server: uvicorn" banner: it tells a scanner what to try, and nobody else reads it.
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    if settings.workers > 1 and reuse_port_available():
        # One socket per worker, so that connections opened together are spread over the
        # workers instead of all landing on the first to wake (server/supervisor.py).
        sockets = worker_sockets(settings.host, settings.port, settings.workers)
        port = int(sockets[0].getsockname()[1])
        on_listening()
        _supervise(
            SpreadingSupervisor(
                config, sockets, rebind=lambda: bind(settings.host, port, reuse_port=True)
            )
        )
        return
    sock = bind(settings.host, settings.port)
    on_listening()
    if settings.workers > 1:
        _supervise(SpreadingSupervisor(config, [sock], spread=False))
    else:
        uvicorn.Server(config).run(sockets=[sock])


def _supervise(supervisor: SpreadingSupervisor) -> None:
    supervisor.run()
    if supervisor.startup_failed:
        raise ConfigurationError(
            "server: a worker failed to start (its error is in the log above); stopped"
        )
