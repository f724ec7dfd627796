"""A real mutual-TLS server on loopback for tests (the trustme pattern, with threads)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from cryptography import x509


@dataclass
class Handshake:
    """What the server saw of one connection."""

    peer: x509.Certificate | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


@contextmanager
def mtls_server(
    client_ca_pem: bytes, tmp_path: Path
) -> Iterator[tuple[int, trustme.CA, Handshake]]:
    """A TLS server that requires a client certificate from ``client_ca_pem``.

    Yields the port, the trustme CA that signed the server's own certificate (for the
    client's trust store) and a :class:`Handshake` filled in by the server thread.
    """
    server_ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ca.issue_cert("localhost").configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=client_ca_pem.decode())
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    result = Handshake()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with context.wrap_socket(conn, server_side=True) as tls:
                der = tls.getpeercert(binary_form=True)
                result.peer = x509.load_der_x509_certificate(der) if der else None
                tls.sendall(b"hello")
        except (OSError, ssl.SSLError) as exc:
            result.error = exc
        finally:
            result.done.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, server_ca, result
    finally:
        listener.close()
        thread.join(timeout=10)


def connect(port: int, server_ca: trustme.CA, cert_pem: str, key_pem: str, tmp_path: Path) -> bytes:
    """Connect with a client certificate; return what the server sent, or raise."""
    context = ssl.create_default_context()
    server_ca.configure_trust(context)
    cert_file, key_file = tmp_path / "client.crt", tmp_path / "client.key"
    cert_file.write_text(cert_pem)
    key_file.write_text(key_pem)
    key_file.chmod(0o600)
    context.load_cert_chain(cert_file, key_file)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.recv(5)
