"""deploy/asgi/node_app.py run as written: under uvicorn's own mutual TLS (issue 12).

The node app asks a nodecert service (another process, reached over HTTP with the shared
secret) through ``RemoteDecider``; real TLS handshakes with the certificates that
``nodecert nodes certificate`` writes. The same app behind nginx is in test_nginx.py.
"""

from __future__ import annotations

import ast
import contextlib
import http.client
import json
import re
import shlex
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodecert.bootstrap import build_service
from nodecert.core.config import Settings
from nodecert.core.values import RevocationReason
from nodecert.http.app import create_app
from tests.kit import ADMIN, LiveServer, free_port, issue, new_ca, sign, write_client
from tests.processes import cli, nodecert_env

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "deploy" / "asgi"
SECRET = "node-app-recipe-shared-secret"
HOST = "n1.nodes.example"


@contextlib.contextmanager
def node_app(env: dict[str, str], *uvicorn_args: str, log: Path) -> Iterator[int]:
    """``uvicorn node_app:app ARGS`` from deploy/asgi, once it listens; stopped after.

    Yields the TCP port, or 0 when ARGS has ``--uds`` (then it listens on that socket only).
    """
    argv = [sys.executable, "-m", "uvicorn", "node_app:app", "--app-dir", str(APP_DIR)]
    uds = uvicorn_args[uvicorn_args.index("--uds") + 1] if "--uds" in uvicorn_args else None
    port = 0 if uds else free_port()
    argv += [*uvicorn_args] if uds else [*uvicorn_args, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            family = socket.AF_UNIX if uds else socket.AF_INET
            with socket.socket(family) as sock:
                if sock.connect_ex(uds or ("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def app_env(service_url: str, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("NODECERT_")}
    env.update(NODECERT_SERVER=service_url, NODECERT_AUTHORIZE_SECRET=SECRET, NODE_ID="n1", **extra)
    return env


@pytest.fixture
def setup(tmp_path: Path):
    home = tmp_path / "home"
    service = build_service(Settings(home=home, authorize_secret=SECRET))
    env = nodecert_env(home)
    cli(env, "nodes", "add", "n1", "--owner", "alice")
    certs = tmp_path / "certs"
    certs.mkdir()
    cli(env, "nodes", "certificate", "n1", "--dns", HOST, "--out", str(certs))
    with LiveServer(create_app(service)) as live:
        yield service, live.url, certs


def documented_args(which: int, certs: Path | None = None, run: Path | None = None) -> list[str]:
    """The uvicorn options of the ``which``-th command line in node_app.py's docstring.

    Run as written but for the machine's own: the certificate directory, the socket's
    directory, host and port.
    """
    doc = ast.get_docstring(ast.parse((APP_DIR / "node_app.py").read_text())) or ""
    commands = re.findall(r"^ *(uvicorn node_app:app (?:.*\\\n)*.*)$", doc, flags=re.MULTILINE)
    argv = shlex.split(commands[which].replace("\\\n", " "))[2:]
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--host", "--port"):
            skip = True
        else:
            arg = arg.replace("/etc/nodecert", str(certs)) if certs else arg
            out.append(arg.replace("/run/nodecert-n1", str(run)) if run else arg)
    return out


def tls_args(certs: Path) -> list[str]:
    return [
        "--ssl-certfile", str(certs / "n1-server.crt"),
        "--ssl-keyfile", str(certs / "n1-server.key"),
        "--ssl-ca-certs", str(certs / "ca.crt"),
        "--ssl-cert-reqs", "2",
    ]  # fmt: skip


def get(port: int, certs: Path, client: tuple[Path, Path] | None) -> tuple[int, dict]:
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    if client is not None:
        context.load_cert_chain(*client)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        connection.sock = tls
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, json.loads(response.read())


def test_directly_under_uvicorn_tls(setup, tmp_path):
    service, url, certs = setup
    alice = write_client(
        issue(service.authority, "alice", "n1", admin=service.administration), tmp_path, "alice"
    )
    args = documented_args(0, certs)  # The docstring's command line, as written.
    assert args == ["--http", "nodecert.server.tls:TLSHttpToolsProtocol", *tls_args(certs)]
    with node_app(app_env(url), *args, log=tmp_path / "app.log") as port:
        assert get(port, certs, alice) == (200, {"user": "alice", "node": "n1"})
        other = write_client(
            issue(service.authority, "alice", "n2", admin=service.administration),
            tmp_path,
            "alice-n2",
        )
        status, body = get(port, certs, other)
        assert (status, body["reason"]) == (403, "wrong_node")
        issued = issue(service.authority, "alice", "n1", admin=service.administration)
        revoked = write_client(issued, tmp_path, "alice-revoked")
        assert get(port, certs, revoked)[0] == 200
        service.administration.revoke(ADMIN, issued.serial, RevocationReason.KEY_COMPROMISE)
        status, body = get(port, certs, revoked)
        assert (status, body["reason"]) == (403, "revoked")
        # A foreign CA or no certificate: the handshake itself fails.
        foreign = write_client(sign(new_ca(tmp_path / "foreign"), "alice", "n1"), tmp_path, "x")
        for client in (foreign, None):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                get(port, certs, client)


def test_the_service_unreachable_denies(setup, tmp_path):
    service, _, certs = setup
    alice = write_client(
        issue(service.authority, "alice", "n1", admin=service.administration), tmp_path, "alice"
    )
    gone = f"http://127.0.0.1:{free_port()}"
    args = ["--http", "nodecert.server.tls:TLSHttpToolsProtocol", *tls_args(certs)]
    with node_app(app_env(gone), *args, log=tmp_path / "app.log") as port:
        status, body = get(port, certs, alice)
        assert (status, body["reason"]) == (403, "store_unavailable")


def test_stock_uvicorn_gives_the_app_no_client_certificate(setup, tmp_path):
    # Why the recipe names nodecert's protocol class: uvicorn verifies the client
    # certificate but implements no ASGI TLS extension, so the app cannot see it.
    service, url, certs = setup
    alice = write_client(
        issue(service.authority, "alice", "n1", admin=service.administration), tmp_path, "alice"
    )
    args = ["--http", "httptools", *tls_args(certs)]
    with node_app(app_env(url), *args, log=tmp_path / "app.log") as port:
        status, body = get(port, certs, alice)
        assert (status, body["reason"]) == (403, "no_certificate")


def _start(env: dict[str, str], *, uvicorn: bool = False) -> subprocess.CompletedProcess[str]:
    if uvicorn:
        argv = [sys.executable, "-m", "uvicorn", "node_app:app", "--app-dir", str(APP_DIR)]
        argv += ["--uds", "/nonexistent/app.sock"]  # never reached: the app stops first
    else:
        argv = [sys.executable, "-c", "import node_app"]
    return subprocess.run(
        argv, env=env, cwd=APP_DIR, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"NODECERT_AUTHORIZE_SECRET": None}, "NODECERT_AUTHORIZE_SECRET"),
        ({"NODECERT_SERVER": None}, "NODECERT_SERVER"),
        ({"NODE_ID": "  "}, "NODE_ID"),
        ({"NODE_TRUSTED_PROXY": "127.0.0.1"}, "NODE_PROXY_SECRET"),
        ({"NODE_PROXY_SECRET_FILE": "/nonexistent/n1-proxy.secret"}, "NODE_PROXY_SECRET_FILE"),
        ({"NODE_PROXY_SECRET": "short"}, "proxy_secret"),
        ({"NODECERT_SERVER": "http://nodecert.example:8080"}, "https"),
        ({"NODECERT_AUTHORIZE_SECRET_FILE": "/etc"}, "NODECERT_AUTHORIZE_SECRET_FILE"),
    ],
)
def test_a_missing_or_unsafe_setting_stops_the_app_with_one_line(change, names):
    env = app_env("http://127.0.0.1:9")
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    done = _start(env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("node_app: "), done.stderr
    assert names in lines[0]
    assert SECRET not in done.stderr + done.stdout


def test_under_uvicorn_a_missing_secret_is_one_line_not_a_traceback():
    env = app_env("http://127.0.0.1:9")
    env.pop("NODECERT_AUTHORIZE_SECRET")
    done = _start(env, uvicorn=True)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "KeyError" not in done.stderr, done.stderr
    assert "node_app: NODECERT_AUTHORIZE_SECRET (or NODECERT_AUTHORIZE_SECRET_FILE) is not set" in (
        done.stderr
    )


def test_the_secrets_can_come_from_files(setup, tmp_path):
    service, url, certs = setup
    alice = write_client(
        issue(service.authority, "alice", "n1", admin=service.administration), tmp_path, "alice"
    )
    (tmp_path / "authorize.secret").write_text(SECRET + "\n")
    env = app_env(url, NODECERT_AUTHORIZE_SECRET_FILE=str(tmp_path / "authorize.secret"))
    env.pop("NODECERT_AUTHORIZE_SECRET")
    args = ["--http", "nodecert.server.tls:TLSHttpToolsProtocol", *tls_args(certs)]
    with node_app(env, *args, log=tmp_path / "app.log") as port:
        assert get(port, certs, alice) == (200, {"user": "alice", "node": "n1"})
