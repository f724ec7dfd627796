"""docs/aws.md's walkthrough (deploy/aws/walkthrough.sh) run as written.

The script's ``aws cognito-idp`` commands go to Cognito in a moto server (the user pool,
app client and admin group are made as deploy/template.yaml makes them); its ``curl``
calls go to ``nodecert serve`` verifying moto's Cognito ID tokens against moto's JWKS,
which stands in for API Gateway + the Lambda function (the same routes and contract); its
last ``curl --cert`` makes a real mutual-TLS handshake with a server that, like the node
domain, requires a client certificate of the CA. What cannot run here: ``sam deploy``,
API Gateway's custom domain and its authorizer (the rehearsal, ``make aws-rehearsal``,
emulates those from the template).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import ssl
import stat
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from nodecert.core.identity import Identity
from tests.processes import free_port, nodecert_env, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "aws" / "walkthrough.sh"
TOOLS = ("aws", "curl", "jq", "openssl")

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason=f"the walkthrough needs {', '.join(TOOLS)} on PATH",
)


class NodeHandler(http.server.BaseHTTPRequestHandler):
    """The node behind the domain: answers with who called, from the client certificate."""

    def do_GET(self) -> None:
        der = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        identity = Identity.from_certificate(
            x509.load_der_x509_certificate(der), trust_domain="nodecert.local"
        )
        body = json.dumps({"user": identity.user_id, "node": identity.node_id}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def node_domain(ca_pem: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS server requiring a client certificate of the CA; yields port, its CA file."""
    server_ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ca.issue_cert("localhost").configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=ca_pem)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NodeHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server_ca_file = tmp_path / "domain-ca.pem"
    server_ca.cert_pem.write_to_path(str(server_ca_file))
    try:
        yield server.server_address[1], server_ca_file
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stack(aws_client, unique):
    """What deploy/template.yaml makes in Cognito: pool, app client, admin group."""
    cognito = aws_client("cognito-idp")
    pool = cognito.create_user_pool(PoolName=f"nodecert-{unique}")["UserPool"]["Id"]
    client = cognito.create_user_pool_client(
        UserPoolId=pool,
        ClientName="nodecert",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    cognito.create_group(UserPoolId=pool, GroupName="nodecert-admins")
    return pool, client


@pytest.fixture
def aws_client(aws_env, moto_endpoint):
    import boto3

    def make(service):
        return boto3.client(service, endpoint_url=moto_endpoint, region_name="eu-west-1")

    return make


def test_the_walkthrough_runs_as_written(stack, moto_endpoint, tmp_path):
    pool, client = stack
    port = free_port()
    env = nodecert_env(
        tmp_path / "home",
        port,
        oidc_issuer=f"https://cognito-idp.eu-west-1.amazonaws.com/{pool}",
        oidc_audience=client,
        oidc_jwks_url=f"{moto_endpoint}/{pool}/.well-known/jwks.json",
        key_pool_size="0",
    )
    server = start_server(env, tmp_path / "serve.log")
    try:
        api = f"http://127.0.0.1:{port}"
        ca_pem = urllib.request.urlopen(f"{api}/v1/ca", timeout=10).read().decode()
        domains = node_domain(ca_pem, tmp_path)
        domain_port, domain_ca = next(domains)
        work = tmp_path / "work"
        work.mkdir()
        script_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("NODECERT_", "AWS_"))},
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": moto_endpoint,
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "CURL_CA_BUNDLE": str(domain_ca),  # The domain's certificate is a public one.
            "POOL": pool,
            "CLIENT": client,
            "API": api,
            "NODE_URL": f"https://localhost:{domain_port}/nodes/node-1/status",
            "ADMIN_PASSWORD": "Adm1n-Passw0rd!",
            "ALICE_PASSWORD": "Al1ce-Passw0rd!",
        }
        done = subprocess.run(
            ["bash", str(SCRIPT)],
            cwd=work,
            env=script_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        next(domains, None)
    finally:
        stop_server(server)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    node = json.loads(lines[0])
    called = json.loads(lines[-1])
    # The node's owner is alice's sub (a UUID), and the node saw alice's certificate.
    assert node["nodeId"] == "node-1"
    assert called == {"user": node["owner"], "node": "node-1"}
    assert len(node["owner"]) == 36 and node["owner"].count("-") == 4
    key = work / "node-1.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not (work / "issued.json").exists()
    assert not (work / "node-1.request").exists()  # The key goes once the certificate is saved.


def test_the_docs_show_the_walkthrough_unchanged():
    doc = (ROOT / "docs" / "aws.md").read_text()
    marker = "file `deploy/aws/walkthrough.sh`\n\n```sh\n"
    assert marker in doc
    shown = doc.split(marker, 1)[1].split("```", 1)[0]
    assert shown == SCRIPT.read_text()
