"""The node backend of the rehearsal: deploy/nginx/nodecert-apigateway-backend.conf, run as
written with real nginx, in front of one small node API per node.

The recipe's machine-specific literals (the listen address and /etc/nginx/nodecert/) are
replaced, each of which must occur in it; its files are written as its comment says:
``apigateway-client.crt`` is the certificate of the stage's ``AWS::ApiGateway::ClientCertificate``
(what ``aws apigateway get-client-certificate`` prints; the CloudFormation stand-in plays API
Gateway and made it), ``backend.crt``/``backend.key`` a certificate of a CA the gateway
emulation trusts as API Gateway trusts public CAs, ``nodes.map`` one line per node.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECIPE = (
    Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "nodecert-apigateway-backend.conf"
)
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
MAIN = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/conf.d/*.conf;
}}
"""


class NodeAPI:
    """One node's own API: answers every GET with what it was told, and its own name."""

    def __init__(self, name: str, seen: list[dict[str, Any]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                call = {
                    "path": self.path,
                    "user": self.headers.get("X-Nodecert-User"),
                    "node": self.headers.get("X-Nodecert-Node"),
                    "api": name,
                }
                seen.append(call)
                body = json.dumps(call).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NginxBackend:
    """nginx with the recipe, listening on :attr:`url` once :meth:`start` ran.

    Args:
        workdir: A directory of its own.
        server_ca: A ``trustme.CA`` that issues the backend's certificate.
        nodes: The node ids of ``nodes.map``, each with a :class:`NodeAPI`.
    """

    def __init__(self, workdir: Path, server_ca: Any, nodes: list[str]) -> None:
        if NGINX is None:
            import pytest

            pytest.skip("nginx not found: `make deps` installs it (nginx-light)")
        self.workdir, self.server_ca = workdir, server_ca
        # The port is the stack's NodeBackendUrl from the first deploy on, but nginx starts
        # only after the second: hold the port (bound, not listening) until then, so that
        # nothing else on a busy machine takes it in between.
        self._reservation = socket.socket()
        self._reservation.bind(("127.0.0.1", 0))
        self.port = int(self._reservation.getsockname()[1])
        self.url = f"https://127.0.0.1:{self.port}"
        self.seen: list[dict[str, Any]] = []
        self.apis = {node: NodeAPI(node, self.seen) for node in nodes}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, client_certificate_pem: str) -> None:
        """Write the recipe's files (API Gateway's certificate among them) and start nginx."""
        files = self.workdir / "nodecert"
        files.mkdir()
        (files / "apigateway-client.crt").write_text(client_certificate_pem)
        server = self.server_ca.issue_cert("127.0.0.1")
        (files / "backend.crt").write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
        server.private_key_pem.write_to_path(str(files / "backend.key"))
        (files / "nodes.map").write_text(
            "".join(f"{node} {api.address};\n" for node, api in self.apis.items())
        )
        recipe = RECIPE.read_text()
        for literal, value in {
            "listen 443 ssl;": f"listen 127.0.0.1:{self.port} ssl;",
            "/etc/nginx/nodecert/": f"{files}/",
        }.items():
            assert literal in recipe, f"the recipe no longer contains {literal!r}"
            recipe = recipe.replace(literal, value)
        conf_d = self.workdir / "conf.d"
        conf_d.mkdir()
        (conf_d / RECIPE.name).write_text(recipe)
        (self.workdir / "nginx.conf").write_text(MAIN.format(tmp=self.workdir))
        assert NGINX is not None
        self._reservation.close()
        self.process = subprocess.Popen(
            [NGINX, "-c", str(self.workdir / "nginx.conf"), "-p", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited: {self.log()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("nginx did not start listening")

    def log(self) -> str:
        log = self.workdir / "error.log"
        return log.read_text()[-3000:] if log.exists() else ""

    def close(self) -> None:
        self._reservation.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for api in self.apis.values():
            api.close()
