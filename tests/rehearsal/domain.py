"""The mutual-TLS custom domain of the rehearsal: a real TLS listener before the gateway."""

from __future__ import annotations

import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.rehearsal.apigw import Gateway, message
from tests.rehearsal.stack import Stack, TemplateError


def client_cert_context(der: bytes) -> dict[str, Any]:
    """``requestContext.identity.clientCert`` for a certificate, as API Gateway fills it."""
    certificate = x509.load_der_x509_certificate(der)
    digits = f"{certificate.serial_number:x}"
    digits = "0" * (len(digits) % 2) + digits
    serial = ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))
    fmt = "%b %d %H:%M:%S %Y GMT"
    return {
        "clientCertPem": certificate.public_bytes(serialization.Encoding.PEM).decode(),
        "subjectDN": certificate.subject.rfc4514_string(),
        "issuerDN": certificate.issuer.rfc4514_string(),
        "serialNumber": serial,
        "validity": {
            "notBefore": certificate.not_valid_before_utc.strftime(fmt),
            "notAfter": certificate.not_valid_after_utc.strftime(fmt),
        },
    }


class DomainListener:
    """The mutual-TLS custom domain: TLS 1.2+, client certificate required.

    Args:
        gateway: Where requests go after the handshake.
        stack: For the domain's base path mapping.
        domain: The ``AWS::ApiGateway::DomainName`` logical id.
        truststore_pem: The CA bundle client certificates must chain to.
        server_cert: ``(certificate chain file, key file)`` for the domain name.
    """

    def __init__(
        self,
        gateway: Gateway,
        stack: Stack,
        domain: str,
        truststore_pem: str,
        server_cert: tuple[str, str],
    ) -> None:
        mappings = [
            m["Properties"]
            for m in stack.of_type("AWS::ApiGateway::BasePathMapping").values()
            if m["Properties"]["DomainName"] == {"Ref": domain}
        ]
        if len(mappings) != 1:
            raise TemplateError(f"{domain}: {len(mappings)} base path mappings")
        (mapping,) = mappings
        api = mapping["RestApiId"]["Ref"]
        base = "/" + str(stack.resolve(mapping.get("BasePath", ""))).strip("/")
        name = stack.physical[domain]
        policy = stack.resources[domain]["Properties"].get("SecurityPolicy", "TLS_1_0")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = (
            ssl.TLSVersion.TLSv1_2 if policy == "TLS_1_2" else ssl.TLSVersion.TLSv1
        )
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=truststore_pem)
        context.load_cert_chain(*server_cert)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                der = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
                path, _, raw_query = self.path.partition("?")
                query = dict(urllib.parse.parse_qsl(raw_query))
                if base != "/" and not (path == base or path.startswith(base + "/")):
                    reply = message(403, "Forbidden")
                else:
                    inner = path[len(base) :] if base != "/" else path
                    reply = gateway.request(
                        api,
                        self.command,
                        inner or "/",
                        headers=dict(self.headers.items()),
                        query=query,
                        body=body,
                        client_cert=client_cert_context(der),
                        domain=name,
                        source_ip=self.client_address[0],
                    )
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any  # noqa: N815

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[Any, Any]:
                sock, address = super().get_request()
                return context.wrap_socket(sock, server_side=True), address

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a refused handshake: the client sees the TLS alert

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.name = name
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
