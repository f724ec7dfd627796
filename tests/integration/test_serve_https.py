"""``nodecert serve`` over HTTPS (issue 19): NODECERT_TLS_CERT / NODECERT_TLS_KEY.

Failure paths first: missing, mismatched, encrypted and garbage files stop the start with
one line; TLS 1.1 and ciphers outside Mozilla's "intermediate" profile are refused by the
server (the alert comes from it). Then real clients: Python ``ssl`` with TLS 1.2 and 1.3,
and ``nodecert request`` / ``renew`` trusting the service through ``--cacert`` (and
refusing it through the system store, which does not know our CA).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodecert.backends.local.hierarchy import key_bytes
from nodecert.cli import main
from nodecert.core.config import Settings
from nodecert.core.errors import ConfigurationError
from nodecert.core.keys import KeyType, generate_private_key
from nodecert.server.https import server_context
from tests.processes import NODECERT, cli, free_port, nodecert_env, stop_server

# The service's own certificate, for the host name clients use.
HOST = "localhost"


def _start(env: dict[str, str], log: Path, roots: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [NODECERT, "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    context = ssl.create_default_context(cafile=str(roots))
    url = f"https://{HOST}:{env['NODECERT_PORT']}/healthz"
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1, context=context).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise AssertionError(f"nodecert serve exited:\n{log.read_text()}") from None
            time.sleep(0.1)
    stop_server(process)
    raise AssertionError("nodecert serve did not answer /healthz over HTTPS within 30 s")


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """A home, the service's certificate from its own CA, and ``nodecert serve`` over TLS."""
    base = tmp_path_factory.mktemp("https")
    home, tls = base / "home", base / "tls"
    env = nodecert_env(home, free_port())
    cli(env, "init")
    cli(env, "nodes", "add", "nodecert-service", "--owner", "ops")
    tls.mkdir()
    cli(env, "nodes", "certificate", "nodecert-service", "--dns", HOST, "--out", str(tls))
    # The server certificate followed by its chain, as a TLS server must send it.
    served = tls / "server-chain.pem"
    served.write_bytes(
        (tls / "nodecert-service-server.crt").read_bytes() + (tls / "ca.crt").read_bytes()
    )
    roots = base / "roots.pem"
    roots.write_bytes((home / "ca" / "root.crt").read_bytes())
    env |= {
        "NODECERT_TLS_CERT": str(served),
        "NODECERT_TLS_KEY": str(tls / "nodecert-service-server.key"),
    }
    process = _start(env, base / "serve.log", roots)
    try:
        yield f"https://{HOST}:{env['NODECERT_PORT']}", base, env
    finally:
        stop_server(process)


def _handshake(port: int, roots: Path, context: ssl.SSLContext | None = None) -> str:
    if context is None:
        context = ssl.create_default_context(cafile=str(roots))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        return f"{tls.version()} {tls.cipher()[0]}"  # type: ignore[index]


def _old_client(roots: Path, *, maximum: ssl.TLSVersion, ciphers: str) -> ssl.SSLContext:
    # Security level 0 lets this client offer what the server must refuse, so that the
    # refusal (an alert) comes from the server, not from the client's own OpenSSL policy.
    context = ssl.create_default_context(cafile=str(roots))
    with warnings.catch_warnings():
        # Python deprecates naming TLS 1.0 and 1.1; offering them is this client's job.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = min(maximum, ssl.TLSVersion.TLSv1_1)
        context.maximum_version = maximum
    context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    return context


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# Failure paths: the files.


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert(HOST)
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
    key.write_bytes(issued.private_key_pem.bytes())
    return cert, key


def test_missing_mismatched_encrypted_and_garbage_files_are_one_clear_error(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    cert, key = pair
    with pytest.raises(ConfigurationError, match="no such file"):
        server_context(tmp_path / "missing.crt", key)
    other = tmp_path / "other.key"
    other.write_bytes(key_bytes(generate_private_key(KeyType.EC_P256), None))
    with pytest.raises(ConfigurationError, match="not a PEM certificate and its"):
        server_context(cert, other)
    secret = "tls-key-passphrase-never-shown"
    loaded = serialization.load_pem_private_key(key.read_bytes(), None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey | type(loaded))
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key_bytes(loaded, secret))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError) as caught:
        server_context(cert, encrypted)
    garbage = tmp_path / "garbage.crt"
    garbage.write_bytes(b"\x00" * 4096)
    with pytest.raises(ConfigurationError, match="not a PEM certificate"):
        server_context(garbage, key)
    assert secret not in str(caught.value)
    assert key.read_text().splitlines()[1] not in str(caught.value)


def test_one_of_the_two_settings_alone_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="set both or neither"):
        Settings.from_env({"NODECERT_TLS_CERT": "/etc/nodecert/server.crt"})
    with pytest.raises(ConfigurationError, match="set both or neither"):
        Settings.from_env({"NODECERT_TLS_KEY": "/etc/nodecert/server.key"})


def test_serve_with_a_bad_key_stops_with_one_line(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    cert, _ = pair
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    env = nodecert_env(tmp_path / "home", free_port(), tls_cert=str(cert), tls_key=str(bad))
    done = subprocess.run(
        [NODECERT, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "NODECERT_TLS_CERT/NODECERT_TLS_KEY" in done.stderr
    assert "Traceback" not in done.stderr


# The server on the wire.


def test_tls_1_2_and_1_3_with_the_intermediate_profile(
    https: tuple[str, Path, dict[str, str]],
) -> None:
    url, base, _ = https
    roots = base / "roots.pem"
    assert _handshake(_port(url), roots).startswith("TLSv1.3 ")
    twelve = ssl.create_default_context(cafile=str(roots))
    twelve.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _handshake(_port(url), roots, twelve) == "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256"


@pytest.mark.parametrize(
    ("maximum", "cipher"),
    [
        (ssl.TLSVersion.TLSv1_1, "DEFAULT"),  # TLS 1.1, whatever the cipher.
        (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA"),  # CBC with SHA-1.
        (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES256-SHA384"),  # CBC.
    ],
    ids=["tls1.1", "cbc-sha1", "cbc-sha384"],
)
def test_old_protocols_and_ciphers_are_refused_by_the_server(
    https: tuple[str, Path, dict[str, str]], maximum: ssl.TLSVersion, cipher: str
) -> None:
    url, base, _ = https
    roots = base / "roots.pem"
    old = _old_client(roots, maximum=maximum, ciphers=cipher)
    # The same client completes a handshake with a server that allows everything: what
    # refuses it below is nodecert's server, not this client's OpenSSL.
    tls = base / "tls"
    with _permissive_server(
        base / "tls" / "server-chain.pem", tls / "nodecert-service-server.key"
    ) as port:
        assert _handshake(port, roots, old).split()[0] in ("TLSv1.1", "TLSv1.2")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _handshake(_port(url), roots, old)
    # Refusing is routine: no traceback in the server's log.
    assert "Traceback" not in (base / "serve.log").read_text()


@contextlib.contextmanager
def _permissive_server(cert: Path, key: Path) -> Iterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            conn.settimeout(10)
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(timeout=10)


def test_nodecert_request_and_renew_trust_the_service_through_cacert(
    https: tuple[str, Path, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, base, env = https
    for name in ("NODECERT_HOME", "NODECERT_TOKEN", "NODECERT_SERVER"):
        monkeypatch.delenv(name, raising=False)
    cli(env, "nodes", "add", "n1", "--owner", "alice")
    token = cli(env, "dev-token", "alice")
    monkeypatch.setenv("NODECERT_TOKEN", token)
    out = tmp_path / "out"
    out.mkdir()
    # The system store does not know our CA: refused, one line, nothing written.
    assert main(["request", "n1", "--server", url, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nodecert: error:") and "certificate" in err and "Traceback" not in err
    assert list(out.iterdir()) == []
    roots = str(base / "roots.pem")
    assert main(["request", "n1", "--server", url, "--cacert", roots, "--out", str(out)]) == 0
    issued = x509.load_pem_x509_certificate((out / "n1.crt").read_bytes())
    monkeypatch.delenv("NODECERT_TOKEN")
    renew = ["renew", "--cert", str(out / "n1.crt"), "--key", str(out / "n1.key")]
    assert main([*renew, "--server", url, "--cacert", roots, "--renew-before", "30d"]) == 0
    renewed = x509.load_pem_x509_certificate((out / "n1.crt").read_bytes())
    assert renewed.serial_number != issued.serial_number
    assert renewed.issuer == issued.issuer
