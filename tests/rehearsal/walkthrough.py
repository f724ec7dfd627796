"""docs/aws.md's walkthrough (deploy/aws/walkthrough.sh) run as written against the rehearsal.

Once the rehearsal has deployed the stack and its mutual-TLS domain, the script runs with
the stack's outputs as its inputs: its ``aws cognito-idp`` commands go to moto's Cognito
(the stack's user pool, app client and admin group), its ``curl`` calls to the API Gateway
emulation of the issuing API (through a plain HTTP front standing in for the
``execute-api`` endpoint: ``API`` is the ``ApiUrl`` output's shape, stage included), and
its last ``curl --cert`` through the emulated custom domain: a real mutual-TLS handshake,
the node authorizer Lambda, the ``http_proxy`` integration to the node backend. curl
reaches the domain's name through a ``resolve`` line in its ``.curlrc`` (``CURL_HOME``),
as DNS would.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.rehearsal.apigw import Gateway
from tests.rehearsal.scenario import DOMAIN, World, expect, step
from tests.rehearsal.stack import REGION

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "aws" / "walkthrough.sh"
PASSWORDS = {"ADMIN_PASSWORD": "Adm1n-Passw0rd!", "ALICE_PASSWORD": "Al1ce-Passw0rd!"}


def api_front(gateway: Gateway, stage: str) -> ThreadingHTTPServer:
    """An HTTP server that hands every request under ``/<stage>`` to the ``Api`` emulation."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            prefix = f"/{stage}"
            if not url.path.startswith(prefix + "/"):
                status, headers, payload = 403, {}, b'{"message":"Forbidden"}'
            else:
                reply = gateway.request(
                    "Api",
                    self.command,
                    url.path[len(prefix) :],
                    headers=dict(self.headers.items()),
                    query=dict(parse_qsl(url.query)),
                    body=body,
                )
                status, headers, payload = reply.status, reply.headers, reply.body
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _any  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def walkthrough(world: World, stack: contextlib.ExitStack) -> None:
    """Run deploy/aws/walkthrough.sh against the deployed rehearsal; check its output."""
    deployed = world.stack
    assert world.listener is not None
    front = api_front(world.gateway, deployed.stage_of("Api"))
    stack.callback(front.server_close)
    stack.callback(front.shutdown)
    work = world.workdir / "walkthrough"
    work.mkdir()
    curl_home = world.workdir / "curl-home"
    curl_home.mkdir()
    port = world.listener.port
    (curl_home / ".curlrc").write_text(f"resolve = {DOMAIN}:{port}:127.0.0.1\n")
    server_ca = world.workdir / "domain-ca.pem"
    server_ca.write_bytes(world.server_ca.cert_pem.bytes())
    with step(world, "deploy/aws/walkthrough.sh runs as written"):
        done = subprocess.run(
            ["bash", str(SCRIPT)],
            cwd=work,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith(("NODECERT_", "AWS_"))},
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_ENDPOINT_URL": world.gateway.endpoint,
                "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                "CURL_HOME": str(curl_home),
                "CURL_CA_BUNDLE": str(server_ca),
                "POOL": deployed.physical["UserPool"],
                "CLIENT": deployed.physical["UserPoolClient"],
                "API": f"http://127.0.0.1:{front.server_address[1]}/{deployed.stage_of('Api')}",
                "NODE_URL": f"https://{DOMAIN}:{port}/nodes/node-1/status",
                **PASSWORDS,
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        expect(done.returncode == 0, f"exit {done.returncode}: {done.stdout}{done.stderr}")
        lines = done.stdout.strip().splitlines()
        cognito = deployed.clients("cognito-idp")
        attributes = cognito.admin_get_user(
            UserPoolId=deployed.physical["UserPool"], Username="alice"
        )["UserAttributes"]
        sub = next(a["Value"] for a in attributes if a["Name"] == "sub")
        node = json.loads(lines[0])
        expect(node["nodeId"] == "node-1" and node["owner"] == sub, f"step 4 printed {lines[0]}")
        expect(lines[1].startswith("subject=") and f"CN = {sub}" in lines[1], lines[1])
        expect(lines[2].startswith("notAfter="), f"step 5 printed {lines[2]}")
        called = json.loads(lines[-1])
        expected = {"path": "/nodes/node-1/status", "user": sub, "node": "node-1", "api": "node-1"}
        expect(called == expected, f"the node saw {called}")
        key = work / "node-1.key"
        expect(key.stat().st_mode & 0o077 == 0, "node-1.key is readable by others")
        expect(not (work / "issued.json").exists(), "issued.json left behind")
