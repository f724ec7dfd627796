"""``nodecert serve``: uvicorn on a listening socket that nodecert binds itself.

uvicorn binds its socket with ``socket.socket(family, SOCK_STREAM)`` (protocol 0) when it
runs several workers, and asyncio only sets TCP_NODELAY on sockets whose ``proto`` is
IPPROTO_TCP (uvicorn issue #3149). Without TCP_NODELAY every response after the first on a
kept-alive connection waits for the client's delayed ACK: about 40 ms per request. Binding
the socket here with an explicit IPPROTO_TCP fixes it for one worker and for many.
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from nodecert.config import Settings
from nodecert.errors import ConfigurationError

__all__ = ["bind", "run"]

_BACKLOG = 2048  # uvicorn's default.


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` whose accepted connections get TCP_NODELAY.

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


def run(settings: Settings) -> None:
    """Serve the HTTP API with ``settings.workers`` processes until interrupted."""
    config = uvicorn.Config(
        "nodecert.bootstrap:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
    )
    sock = bind(settings.host, settings.port)
    server = uvicorn.Server(config)
    if settings.workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run(sockets=[sock])
