"""uvicorn with the ASGI TLS extension, so an app sees the client certificate.

uvicorn terminates TLS itself (``--ssl-certfile``, ``--ssl-ca-certs``, ``--ssl-cert-reqs
2`` to require and verify a client certificate) but does not implement the ASGI TLS
extension: the application never sees which certificate the client presented, and
:class:`~nodecert.verify.NodeAccessMiddleware` would deny every request
(``no_certificate``). Name this class as uvicorn's HTTP protocol to add it::

    uvicorn app:app --http nodecert.server.tls:TLSHttpToolsProtocol \\
        --ssl-certfile n1-server.crt --ssl-keyfile n1-server.key \\
        --ssl-ca-certs ca.crt --ssl-cert-reqs 2

Each request's scope then carries ``scope["extensions"]["tls"]`` with
``client_cert_chain`` = [the client's certificate, PEM] (Python's ``ssl`` module exposes
the leaf only, which is all the middleware needs: nodecert re-verifies the chain), and
``tls_version``. The protocol also has the head and body deadlines of ``nodecert serve``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from nodecert.server.serve import BoundedHttpToolsProtocol

__all__ = ["TLSHttpToolsProtocol"]

# The ASGI TLS extension gives the version as the TLS wire value.
_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class TLSHttpToolsProtocol(BoundedHttpToolsProtocol):
    """uvicorn's httptools protocol adding the ASGI TLS extension to every request scope."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tls: dict[object, object] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Read the peer certificate once per connection (the handshake is done by now)."""
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            return
        der = ssl_object.getpeercert(binary_form=True)
        self._tls = {
            "server_cert": None,
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": _VERSIONS.get(ssl_object.version() or ""),
            "cipher_suite": None,
        }

    def on_message_begin(self) -> None:
        """Create the scope as uvicorn does, then add the TLS extension to it."""
        super().on_message_begin()
        if self._tls is not None:
            extensions = self.scope.setdefault("extensions", {})
            extensions["tls"] = dict(self._tls)
