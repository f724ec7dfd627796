"""The nginx recipe of docs/node-side.md, with real nginx and real mutual-TLS handshakes.

nginx verifies the chain (``ssl_verify_client on``) and asks nodecert, through
``auth_request``, for the rest of the decision (node, revocation, ownership).
"""

import http.client
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from nodecert.core.ports import RevocationReason
from nodecert.http.app import create_app
from tests.nodeside import (
    ADMIN,
    LiveServer,
    issue,
    new_ca,
    node_server_certificate,
    sign,
    write_client,
)
from tests.processes import free_port

pytestmark = pytest.mark.nginx

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
SECRET = "nginx-to-nodecert-shared-secret"

CONFIG = """
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

    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {tmp}/server.crt;
        ssl_certificate_key {tmp}/server.key;
        ssl_client_certificate {tmp}/ca.crt;
        ssl_verify_client on;
        ssl_verify_depth 2;

        location = /_nodecert_authorize {{
            internal;
            proxy_pass {nodecert}/v1/authorize;
            proxy_method POST;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Client-Cert $ssl_client_escaped_cert;
            proxy_set_header X-Nodecert-Node n1;
            proxy_set_header X-Nodecert-Authorize-Secret "{secret}";
        }}

        location / {{
            auth_request /_nodecert_authorize;
            auth_request_set $nodecert_user $upstream_http_x_nodecert_user;
            add_header X-Nodecert-User $nodecert_user always;
            root {tmp}/www;
        }}
    }}
}}
"""


@pytest.fixture
def service_settings():
    return {"authorize_secret": SECRET}


@pytest.fixture
def nginx(tmp_path, service):
    if NGINX is None:
        pytest.skip("nginx not found: `make test` installs it (apt-get install nginx-light)")
    ca = service.authority.ca
    (tmp_path / "ca.crt").write_text(service.authority.ca_chain_pem())
    node_server_certificate(ca, tmp_path)
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hello from n1\n")
    port = free_port()
    with LiveServer(create_app(service)) as nodecert:
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            CONFIG.format(tmp=tmp_path, port=port, nodecert=nodecert.url, secret=SECRET)
        )
        process = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for(port, process, tmp_path)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=10)
            process.stderr.close()


def _wait_for(port, process, tmp_path):
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (tmp_path / "error.log").read_text() if (tmp_path / "error.log").exists() else ""
            pytest.fail(f"nginx exited: {process.stderr.read().decode()} {log}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail("nginx did not start listening")


def get(port, tmp_path, client):
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    if client is not None:
        context.load_cert_chain(*client)
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.getheader("X-Nodecert-User"), response.read()
    finally:
        connection.close()


def test_the_right_node_is_allowed(nginx, tmp_path, service):
    client = write_client(issue(service.authority, "alice", "n1"), tmp_path, "alice")
    status, user, body = get(nginx, tmp_path, client)
    assert (status, user, body) == (200, "alice", b"hello from n1\n")


def test_the_wrong_node_is_403(nginx, tmp_path, service):
    client = write_client(issue(service.authority, "alice", "n2"), tmp_path, "alice-n2")
    assert get(nginx, tmp_path, client)[0] == 403


def test_a_revoked_certificate_is_403_at_once(nginx, tmp_path, service):
    issued = issue(service.authority, "alice", "n1")
    client = write_client(issued, tmp_path, "alice")
    assert get(nginx, tmp_path, client)[0] == 200
    service.authority.revoke(ADMIN, issued.serial, RevocationReason.KEY_COMPROMISE)
    assert get(nginx, tmp_path, client)[0] == 403


def test_a_transferred_node_is_403(nginx, tmp_path, service):
    client = write_client(issue(service.authority, "alice", "n1"), tmp_path, "alice")
    service.authority.put_node(ADMIN, "n1", "bob")
    assert get(nginx, tmp_path, client)[0] == 403


def test_a_foreign_ca_never_gets_through(nginx, tmp_path, service):
    issue(service.authority, "alice", "n1")
    foreign = write_client(sign(new_ca(tmp_path / "foreign"), "alice", "n1"), tmp_path, "evil")
    # nginx verifies the chain in the handshake but, by design, reports a failure as an HTTP
    # 400 on the established connection ("The SSL certificate error"), not as a TLS alert.
    status, user, body = get(nginx, tmp_path, foreign)
    assert (status, user) == (400, None)
    assert b"SSL certificate error" in body


def test_no_client_certificate_never_gets_through(nginx, tmp_path, service):
    status, _, body = get(nginx, tmp_path, None)
    assert status == 400
    assert b"No required SSL certificate" in body
