"""The nginx recipes of docs/node-side.md, run as written with real nginx and curl.

``deploy/nginx/nodecert-node.conf`` (one node) and ``deploy/nginx/nodecert-gateway.conf``
(many nodes by path) are included unchanged but for the machine-specific literals in
:data:`SUBSTITUTIONS` (paths, ports), each of which must occur in the file. The server
certificate files are written by ``nodecert nodes certificate``, under the names and
host names the recipes name. nginx verifies the chain (``ssl_verify_client on``) and asks
nodecert, through ``auth_request``, for the rest of the decision.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import posixpath
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from nodecert.bootstrap import build_service
from nodecert.core.config import Settings
from nodecert.core.values import RevocationReason
from nodecert.http.app import create_app
from tests.kit import (
    ADMIN,
    LiveServer,
    issue,
    new_ca,
    sign,
    write_client,
)
from tests.processes import NODECERT, free_port, nodecert_env

pytestmark = pytest.mark.nginx

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "deploy" / "nginx"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
CURL = shutil.which("curl")
# The asgi-proxy recipe sends no secret: nginx there does not call nodecert, the app does
# (deploy/asgi/node_app.py, with NODECERT_AUTHORIZE_SECRET from test_node_app_recipe).
from tests.integration.test_node_app_recipe import SECRET  # noqa: E402

UNIX_UPSTREAM = "http://unix:/run/nodecert-n1/app.sock:"

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


@pytest.fixture
def service_settings():
    return {"authorize_secret": SECRET}


def secret_of(recipe: str) -> str:
    """The shared secret the recipe sends (the service under test is configured with it)."""
    match = re.search(r'X-Nodecert-Authorize-Secret "([^"]+)"', recipe)
    assert match, "the recipe sends no X-Nodecert-Authorize-Secret"
    return match.group(1)


def recipe_commands(recipe: str) -> list[str]:
    """The shell lines of the recipe's opening comment (``#   command``), in order."""
    head = recipe.split("\nserver {", 1)[0].split("\nmap ", 1)[0]
    return re.findall(r"^#   (\S.*)$", head, flags=re.MULTILINE)


def substitute(recipe: str, replacements: dict[str, str]) -> str:
    for literal, value in replacements.items():
        assert literal in recipe, f"the recipe no longer contains {literal!r}"
        recipe = recipe.replace(literal, value)
    return recipe


class NormalizingUpstream(http.server.ThreadingHTTPServer):
    """A node API that normalizes paths the way many frameworks do, and says what it served.

    It percent-decodes (``%2f`` included), drops ``;`` parameters, merges slashes and
    resolves dot segments, then answers ``{"node": <the node in the normalized path>, ...}``.
    """

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _UpstreamHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        raw = self.path.split("?", 1)[0]
        path = urllib.parse.unquote(raw)
        path = "/".join(segment.split(";", 1)[0] for segment in path.split("/"))
        path = posixpath.normpath(re.sub("/+", "/", path))
        parts = path.strip("/").split("/")
        node = parts[1] if len(parts) > 1 and parts[0] == "nodes" else None
        body = json.dumps(
            {
                "node": node,
                "raw": raw,
                "user": self.headers.get("X-Nodecert-User"),
                "forwarded_node": self.headers.get("X-Nodecert-Node"),
                "serial": self.headers.get("X-Nodecert-Serial"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Site:
    """nginx running one recipe, and a curl that talks to it as a given client."""

    def __init__(self, tmp: Path, port: int, host: str) -> None:
        self.tmp, self.port, self.host = tmp, port, host

    def get(
        self, path: str, client: tuple[Path, Path] | None, *, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        argv = [
            CURL,
            "--silent",
            "--path-as-is",
            "--max-time",
            "20",
            "--cacert",
            str(self.tmp / "nodecert" / "ca.crt"),
            "--resolve",
            f"{self.host}:{self.port}:127.0.0.1",
            "--write-out",
            "\n%{http_code}",
        ]
        if client is not None:
            argv += ["--cert", str(client[0]), "--key", str(client[1])]
        for name, value in (headers or {}).items():
            argv += ["--header", f"{name}: {value}"]
        argv.append(f"https://{self.host}:{self.port}{path}")
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        body, _, status = done.stdout.rpartition("\n")
        assert status.isdigit() and status != "000", f"curl failed: {done.stderr}"
        return int(status), body

    def get_raw(self, target: bytes, client: tuple[Path, Path]) -> tuple[int, str]:
        """``GET target`` sent byte for byte (curl would cut a '#' or encode), over TLS."""
        context = ssl.create_default_context(cafile=str(self.tmp / "nodecert" / "ca.crt"))
        context.load_cert_chain(str(client[0]), str(client[1]))
        request = b"GET " + target + b" HTTP/1.1\r\nHost: %b\r\nConnection: close\r\n\r\n"
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock,
            context.wrap_socket(sock, server_hostname=self.host) as tls,
        ):
            tls.sendall(request % self.host.encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body.decode("utf-8", "replace")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@contextlib.contextmanager
def _normalizing_upstream(service_url: str, log: Path) -> Iterator[str]:
    upstream = NormalizingUpstream()
    upstream.thread.start()
    try:
        yield upstream.url
    finally:
        upstream.shutdown()
        upstream.server_close()


def _machine(tmp_path: Path) -> dict[str, str]:
    """The machine-specific literals of the recipes' commands, and this machine's own."""
    return {
        "/etc/nginx/nodecert": str(tmp_path / "nodecert"),
        "/etc/nodecert": str(tmp_path / "etc-nodecert"),
        "/run/nodecert-n1": str(tmp_path / "run"),
        "-o nodeapp": f"-o {os.getuid()}",
        "-g www-data": f"-g {os.getgid()}",
    }


@contextlib.contextmanager
def _node_app_upstream(service_url: str, log: Path) -> Iterator[str]:
    # deploy/asgi/node_app.py as its docstring runs it behind nginx: on the Unix socket,
    # with the secret file the recipe's commands wrote.
    from tests.integration.test_node_app_recipe import app_env, documented_args, node_app

    machine = _machine(log.parent)
    secret_file = f"{machine['/etc/nodecert']}/n1-proxy.secret"
    env = app_env(service_url, NODE_TRUSTED_PROXY="unix", NODE_PROXY_SECRET_FILE=secret_file)
    run = Path(machine["/run/nodecert-n1"])
    args = documented_args(1, run=run)  # The docstring's command line behind nginx.
    assert args == ["--uds", str(run / "app.sock"), "--no-proxy-headers"]
    with node_app(env, *args, log=log):
        yield f"http://unix:{run / 'app.sock'}:"


@contextlib.contextmanager
def _node_app_on_tcp_with_secret(service_url: str, log: Path) -> Iterator[str]:
    # The second way: the shared secret alone, over a loopback port (NODE_PROXY_SECRET
    # from the environment).
    from tests.integration.test_node_app_recipe import app_env, node_app

    secret = (log.parent / "etc-nodecert" / "n1-proxy.secret").read_text().strip()
    env = app_env(service_url, NODE_PROXY_SECRET=secret)
    with node_app(env, "--no-proxy-headers", log=log) as port:
        yield f"http://127.0.0.1:{port}"


def _serve(
    tmp_path, home, name, node, owner, dns, *, service_secret=None, upstream=_normalizing_upstream
):
    """nginx with recipe ``name``; nodecert configured with the recipe's secret (or another)."""
    if NGINX is None or CURL is None:
        pytest.skip("nginx or curl not found: `make test` installs nginx (nginx-light)")
    recipe = (RECIPES / name).read_text()
    sends_secret = "X-Nodecert-Authorize-Secret" in recipe
    secret = service_secret or (secret_of(recipe) if sends_secret else SECRET)
    service = build_service(Settings(home=home, authorize_secret=secret))
    # The server certificate, made by the recipe's own command lines, as written.
    commands = recipe_commands(recipe)
    assert any(f"nodes add {node} --owner {owner}" in c for c in commands), commands
    assert any(f"nodes certificate {node} --dns {dns} " in c for c in commands), commands
    if any("openssl " in c for c in commands) and shutil.which("openssl") is None:
        pytest.skip("openssl not found: the recipe makes its secret with `openssl rand`")
    env = nodecert_env(home)
    env["PATH"] = f"{Path(NODECERT).parent}{os.pathsep}{env.get('PATH', '')}"
    for command in commands:
        for literal, value in _machine(tmp_path).items():
            command = command.replace(literal, value)
        subprocess.run(["sh", "-ec", command], env=env, check=True, capture_output=True)
    port = free_port()
    with (
        LiveServer(create_app(service)) as nodecert,
        upstream(nodecert.url, tmp_path / "upstream.log") as upstream_url,
    ):
        replacements = {
            "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
            "/etc/nginx/nodecert/": f"{tmp_path}/nodecert/",
            "http://127.0.0.1:8080": nodecert.url,
            "http://127.0.0.1:9000": upstream_url,
        }
        if "auth_request" not in recipe:  # nginx does not call nodecert itself.
            del replacements["http://127.0.0.1:8080"]
        if UNIX_UPSTREAM in recipe:  # The app listens on a Unix socket.
            replacements[UNIX_UPSTREAM] = replacements.pop("http://127.0.0.1:9000")
        conf_d = tmp_path / "conf.d"
        conf_d.mkdir()
        (conf_d / name).write_text(substitute(recipe, replacements))
        (tmp_path / "nginx.conf").write_text(MAIN.format(tmp=tmp_path))
        process = subprocess.Popen(
            [NGINX, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for(port, process, tmp_path)
            yield Site(tmp_path, port, dns), service
        finally:
            process.terminate()
            process.wait(timeout=10)
            assert process.stderr is not None
            process.stderr.close()


@pytest.fixture
def node_site(tmp_path: Path, home: Path):
    yield from _serve(tmp_path, home, "nodecert-node.conf", "n1", "alice", "n1.nodes.example")


@pytest.fixture
def gateway_site(tmp_path: Path, home: Path):
    yield from _serve(
        tmp_path, home, "nodecert-gateway.conf", "gateway", "operator", "nodes.example"
    )


def _wait_for(port: int, process: subprocess.Popen[bytes], tmp_path: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (tmp_path / "error.log").read_text() if (tmp_path / "error.log").exists() else ""
            assert process.stderr is not None
            pytest.fail(f"nginx exited: {process.stderr.read().decode()} {log}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail("nginx did not start listening")


def _client(service, tmp_path: Path, user: str, node: str) -> tuple[Path, Path]:
    return write_client(
        issue(service.authority, user, node, admin=service.administration),
        tmp_path,
        f"{user}-{node}",
    )


# -- One node: deploy/nginx/nodecert-node.conf ------------------------------------------


def test_the_right_node_is_allowed_and_the_user_reaches_the_upstream(node_site, tmp_path):
    site, service = node_site
    alice = _client(service, tmp_path, "alice", "n1")
    status, body = site.get("/api/x", alice, headers={"X-Nodecert-User": "mallory"})
    assert status == 200, body
    assert json.loads(body)["user"] == "alice"  # The client's own header is replaced.


def test_the_wrong_node_is_403(node_site, tmp_path):
    site, service = node_site
    assert site.get("/", _client(service, tmp_path, "alice", "n2"))[0] == 403


def test_a_revoked_certificate_is_403_at_once(node_site, tmp_path):
    site, service = node_site
    issued = issue(service.authority, "alice", "n1", admin=service.administration)
    client = write_client(issued, tmp_path, "alice")
    assert site.get("/", client)[0] == 200
    service.administration.revoke(ADMIN, issued.serial, RevocationReason.KEY_COMPROMISE)
    assert site.get("/", client)[0] == 403


def test_a_transferred_node_is_403(node_site, tmp_path):
    site, service = node_site
    client = _client(service, tmp_path, "alice", "n1")
    service.administration.put_node(ADMIN, "n1", "bob")
    assert site.get("/", client)[0] == 403


def test_a_foreign_ca_never_gets_through(node_site, tmp_path):
    site, service = node_site
    issue(service.authority, "alice", "n1", admin=service.administration)
    foreign = write_client(sign(new_ca(tmp_path / "foreign"), "alice", "n1"), tmp_path, "evil")
    # nginx verifies the chain in the handshake but, by design, reports a failure as an HTTP
    # 400 on the established connection ("The SSL certificate error"), not as a TLS alert.
    status, body = site.get("/", foreign)
    assert status == 400
    assert "SSL certificate error" in body


def test_no_client_certificate_never_gets_through(node_site):
    site, _ = node_site
    status, body = site.get("/", None)
    assert status == 400
    assert "No required SSL certificate" in body


def test_client_headers_do_not_reach_the_authorize_call(node_site, tmp_path):
    # A client-sent X-Forwarded-For or X-Client-Cert must not influence the decision.
    site, service = node_site
    alice = _client(service, tmp_path, "alice", "n1")
    bob = issue(service.authority, "bob", "n9", admin=service.administration)
    forged = {
        "X-Forwarded-For": "127.0.0.1",
        "X-Client-Cert": urllib.parse.quote(bob.pem),
        # Nor may the client set, for the upstream, any identity header nginx sends it.
        "X-Nodecert-User": "bob",
        "X-Nodecert-Node": "n9",
        "X-Nodecert-Serial": bob.serial,
    }
    status, body = site.get("/", alice, headers=forged)
    served = json.loads(body)
    assert status == 200
    assert (served["user"], served["forwarded_node"]) == ("alice", "n1")
    assert served["serial"] == format(
        x509.load_pem_x509_certificate(alice[0].read_bytes()).serial_number, "x"
    )


def test_the_shared_secret_is_checked(tmp_path, home):
    # The recipe's secret against a service configured with another: every call is refused.
    other = "a-different-secret-of-the-service"
    sites = _serve(
        tmp_path,
        home,
        "nodecert-node.conf",
        "n1",
        "alice",
        "n1.nodes.example",
        service_secret=other,
    )
    site, service = next(sites)
    try:
        status, _ = site.get("/", _client(service, tmp_path, "alice", "n1"))
        assert status in (401, 500)  # auth_request turns a 401 into 401; nothing passes.
    finally:
        sites.close()


# -- Many nodes: deploy/nginx/nodecert-gateway.conf ------------------------------------


def test_the_gateway_serves_each_user_their_own_node_only(gateway_site, tmp_path):
    site, service = gateway_site
    bob = _client(service, tmp_path, "bob", "n9")
    forged = {"X-Nodecert-User": "alice", "X-Nodecert-Node": "n1", "X-Nodecert-Serial": "01"}
    status, body = site.get("/nodes/n9/x", bob, headers=forged)
    assert status == 200, body
    served = json.loads(body)
    assert (served["node"], served["user"], served["forwarded_node"]) == ("n9", "bob", "n9")
    assert served["serial"] == format(
        x509.load_pem_x509_certificate(bob[0].read_bytes()).serial_number, "x"
    )
    assert site.get("/nodes/n1/x", bob)[0] == 403
    assert site.get("/elsewhere", bob)[0] == 404


BYPASS_ATTEMPTS = [
    "/nodes/n9/../n1/x",
    "/nodes/n9/..",
    "/nodes/n9/./../n1/x",
    "/nodes/n9/%2e%2e/n1/x",
    "/nodes/n9/%2E%2e/n1/x",
    "/nodes/n9/.%2E/n1/x",
    "/nodes/n9%2f..%2fn1/x",
    "/nodes/n9%2F..%2Fn1/x",
    "/nodes/n9%2fx",
    "/nodes/n9%5c..%5cn1/x",
    "/nodes/n9%252e%252e/n1/x",
    "//nodes/n1/x",
    "/nodes//n9/x",
    "/nodes/n9;/../n1/x",
    "/nodes/n9/..;/n1/x",
    "/nodes/n9;x=1/x",
    "/nodes/n9\\..\\n1/x",
    # Control characters: nginx's location regex matched "n9" in "/nodes/n9%0a" ($ matches
    # before a final newline) while the upstream decodes the segment to "n9\n"; "..%09" is a
    # dot segment to an upstream that trims whitespace.
    "/nodes/n9%0a",
    "/nodes/n9%0D%0A/x",
    "/nodes/n9/..%09/n1/x",
    "/nodes/n9/%7f/x",
    # Overlong UTF-8 dots and slashes, which lenient decoders read as "." and "/".
    "/nodes/n9/%c0%ae%c0%ae/n1/x",
    "/nodes/n9%C0%AF..%c0%afn1/x",
    "/nodes/n9/%e0%80%ae%e0%80%ae/n1/x",
    "/nodes/n9/%f0%80%80%ae./n1/x",
    # Segments of dots (and trailing spaces), which Windows-style upstreams trim to "..".
    "/nodes/n9/.../n1/x",
    "/nodes/n9/..%20/n1/x",
    "/nodes/n9/.%20%20/x",
    # Unencoded: nginx ends the path at '#', an upstream may not; raw non-ASCII bytes.
    b"/nodes/n9#/x",
    b"/nodes/n9/\xc0\xae\xc0\xae/n1/x",
]


def test_the_gateway_refuses_paths_that_could_name_another_node(gateway_site, tmp_path):
    # Issue 12: bob's certificate for n9 asked for /nodes/n9/../n1/x and got alice's n1
    # from an upstream that normalizes dot segments; %2e%2e did the same.
    site, service = gateway_site
    issue(service.authority, "alice", "n1", admin=service.administration)
    bob = _client(service, tmp_path, "bob", "n9")
    answers = {
        path: site.get_raw(path, bob)
        if isinstance(path, bytes) or "#" in path
        else site.get(path, bob)
        for path in BYPASS_ATTEMPTS
    }
    assert {path: status for path, (status, _) in answers.items() if status != 400} == {}
    assert not any('"n1"' in body for _, body in answers.values())


def test_harmless_encodings_and_queries_reach_the_same_node(gateway_site, tmp_path):
    site, service = gateway_site
    bob = _client(service, tmp_path, "bob", "n9")
    for path in ("/nodes/%6e9/x", "/nodes/n9/a%20b", "/nodes/n9/x?next=/../n1"):
        status, body = site.get(path, bob)
        assert (status, json.loads(body)["node"]) == (200, "n9"), (path, body)
        # And never n1 through the same encodings.
        assert site.get(path.replace("9", "1", 1), bob)[0] == 403, path


# -- A node's own ASGI app behind nginx: deploy/nginx/nodecert-asgi-proxy.conf -------------


@pytest.fixture
def asgi_site(tmp_path: Path, home: Path):
    yield from _serve(
        tmp_path,
        home,
        "nodecert-asgi-proxy.conf",
        "n1",
        "alice",
        "n1.nodes.example",
        upstream=_node_app_upstream,
    )


def test_the_node_app_behind_nginx_decides_with_the_remote_service(asgi_site, tmp_path):
    site, service = asgi_site
    issued = issue(service.authority, "alice", "n1", admin=service.administration)
    alice = write_client(issued, tmp_path, "alice")
    bob = issue(service.authority, "bob", "n9", admin=service.administration)
    # A client-sent X-Client-Cert is replaced by the certificate nginx verified.
    forged = {"X-Client-Cert": urllib.parse.quote(bob.pem), "X-Forwarded-For": "127.0.0.1"}
    status, body = site.get("/", alice, headers=forged)
    assert (status, json.loads(body)) == (200, {"user": "alice", "node": "n1"})
    status, body = site.get("/", write_client(bob, tmp_path, "bob"))
    assert (status, json.loads(body)["reason"]) == (403, "wrong_node")
    service.administration.revoke(ADMIN, issued.serial, RevocationReason.KEY_COMPROMISE)
    status, body = site.get("/", alice)
    assert (status, json.loads(body)["reason"]) == (403, "revoked")


def test_the_asgi_proxy_passes_on_no_identity_header_of_the_client(tmp_path, home):
    # The app behind it decides itself; a client's X-Nodecert-* must not reach it either,
    # in case the app (or a log) reads them the way the gateway recipe's upstream does.
    sites = _serve(tmp_path, home, "nodecert-asgi-proxy.conf", "n1", "alice", "n1.nodes.example")
    site, service = next(sites)
    try:
        alice = _client(service, tmp_path, "alice", "n1")
        forged = {"X-Nodecert-User": "bob", "X-Nodecert-Node": "n9", "X-Nodecert-Serial": "01"}
        status, body = site.get("/", alice, headers=forged)
        served = json.loads(body)
        assert status == 200
        assert (served["user"], served["forwarded_node"], served["serial"]) == (None, None, None)
    finally:
        sites.close()


def _plain_get(address: str | tuple[str, int], headers: dict[str, str]) -> tuple[int, str]:
    """``GET /`` straight to the app (a Unix socket path, or a loopback address), as any
    other process on the host could send it."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    lines = [b"GET / HTTP/1.1", b"Host: n1.nodes.example", b"Connection: close"]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in headers.items()]
    with socket.socket(family) as sock:
        sock.settimeout(20)
        sock.connect(address)
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode("utf-8", "replace")


def test_a_local_process_on_the_socket_is_not_the_proxy(asgi_site, tmp_path):
    # A certificate is public: another process on the node's host puts alice's in its own
    # X-Client-Cert and talks to the app directly. Through a loopback port that used to be
    # "the proxy"; now the socket's directory keeps it out, and without nginx's secret the
    # header is not believed even by a process that can connect (root, as in this test).
    site, service = asgi_site
    issued = issue(service.authority, "alice", "n1", admin=service.administration)
    machine = _machine(tmp_path)
    run = Path(machine["/run/nodecert-n1"])
    assert run.stat().st_mode & 0o777 == 0o750  # as the recipe's `install -d -m 0750`
    socket_path = str(run / "app.sock")
    forged = {"X-Client-Cert": urllib.parse.quote(issued.pem)}
    status, body = _plain_get(socket_path, forged)
    assert (status, json.loads(body)["reason"]) == (403, "no_certificate")
    wrong = {**forged, "X-Nodecert-Proxy-Secret": "0" * 64}
    assert _plain_get(socket_path, wrong)[0] == 403
    # The secret is what nginx proves itself with: the same request with it is believed.
    secret_file = Path(machine["/etc/nodecert"]) / "n1-proxy.secret"
    assert secret_file.stat().st_mode & 0o077 == 0  # `umask 077`
    assert (tmp_path / "nodecert" / "n1-proxy-secret.conf").stat().st_mode & 0o077 == 0
    right = {**forged, "X-Nodecert-Proxy-Secret": secret_file.read_text().strip()}
    status, body = _plain_get(socket_path, right)
    assert (status, json.loads(body)) == (200, {"user": "alice", "node": "n1"})
    # And through nginx, a client's own X-Nodecert-Proxy-Secret is replaced, not added.
    bob = _client(service, tmp_path, "bob", "n9")
    status, body = site.get("/", bob, headers={"X-Nodecert-Proxy-Secret": "0" * 64})
    assert (status, json.loads(body)["reason"]) == (403, "wrong_node")


def test_the_shared_secret_alone_over_a_loopback_port(tmp_path, home):
    # The second way (NODE_PROXY_SECRET, no socket): nginx's proxy_pass to a loopback port.
    sites = _serve(
        tmp_path,
        home,
        "nodecert-asgi-proxy.conf",
        "n1",
        "alice",
        "n1.nodes.example",
        upstream=_node_app_on_tcp_with_secret,
    )
    site, service = next(sites)
    try:
        alice = _client(service, tmp_path, "alice", "n1")
        status, body = site.get("/", alice)
        assert (status, json.loads(body)) == (200, {"user": "alice", "node": "n1"})
        conf = (tmp_path / "conf.d" / "nodecert-asgi-proxy.conf").read_text()
        match = re.search(r"proxy_pass http://127\.0\.0\.1:(\d+);", conf)
        assert match, conf
        forged = {"X-Client-Cert": urllib.parse.quote(alice[0].read_text())}
        status, body = _plain_get(("127.0.0.1", int(match.group(1))), forged)
        assert (status, json.loads(body)["reason"]) == (403, "no_certificate")
    finally:
        sites.close()
