"""The front door as a new user meets it: `nodecert serve` in a fresh data dir, then the CLI."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from nodecert.cli.commands import main
from nodecert.core.identity import Identity
from tests.processes import free_port, nodecert_env, start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("serve") / "data"
    port = free_port()
    process = start_server(nodecert_env(home, port), home.parent / "serve.log")
    try:
        yield f"http://127.0.0.1:{port}", home
    finally:
        stop_server(process)


@pytest.fixture
def cli_env(server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    url, home = server
    for key in list(os.environ):
        if key.startswith("NODECERT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NODECERT_HOME", str(home))
    return url, home


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_serve_creates_the_data_dir_safely(cli_env: tuple[str, Path]) -> None:
    _, home = cli_env
    assert stat.S_IMODE((home / "ca" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "dev-issuer.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    log = (home.parent / "serve.log").read_text()
    assert "DEV ISSUER ACTIVE" in log


def test_request_writes_key_cert_and_ca(
    cli_env: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = cli_env
    assert _run(capsys, "nodes", "add", "cli-n1", "--owner", "carol")[0] == 0
    code, token, _ = _run(capsys, "dev-token", "carol")
    assert code == 0
    token = token.strip()
    code, out, err = _run(
        capsys,
        "request",
        "cli-n1",
        "--server",
        url,
        "--token",
        token,
        "--key-type",
        "ec-p256",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    assert "issued serial" in out
    key = tmp_path / "cli-n1.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((tmp_path / "cli-n1.crt").read_bytes())
    assert Identity.from_certificate(cert) == Identity("carol", "cli-n1")
    ca = x509.load_pem_x509_certificates((tmp_path / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca[0])
    # The key and token never reach the terminal.
    assert "PRIVATE KEY" not in out + err and token not in out + err

    code, out, _ = _run(capsys, "inspect", str(tmp_path / "cli-n1.crt"))
    assert code == 0
    assert "user=carol node=cli-n1" in out
    serial = format(cert.serial_number, "x")
    assert serial in out

    code, out, _ = _run(capsys, "certs", "--server", url, "--token", token)
    assert code == 0 and serial in out and "active" in out
    code, out, _ = _run(capsys, "revoke", serial, "--server", url, "--token", token)
    assert code == 0 and "revoked" in out
    code, out, _ = _run(capsys, "certs", "--server", url, "--token", token, "--status", "revoked")
    assert serial in out


def test_request_with_a_csr_writes_no_key(
    cli_env: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = cli_env
    _run(capsys, "nodes", "add", "cli-n2", "--owner", "dave")
    token = _run(capsys, "dev-token", "dave")[1].strip()
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(tmp_path / "mine.key"),
            "-subj",
            "/CN=ignored",
            "-out",
            str(tmp_path / "mine.csr"),
        ],
        check=True,
        capture_output=True,
    )
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = _run(
        capsys,
        "request",
        "cli-n2",
        "--server",
        url,
        "--token",
        token,
        "--csr",
        str(tmp_path / "mine.csr"),
        "--out",
        str(out_dir),
    )
    assert code == 0, err
    assert not (out_dir / "cli-n2.key").exists()
    assert (out_dir / "cli-n2.crt").exists()


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["request", "someone-elses", "--token", "{token}"],
            "not one of your nodes (forbidden, HTTP 403)",
        ),
        (["request", "bad/node", "--token", "{token}"], "NODE"),
        (["request", "n1", "--token", "garbage"], "HTTP 401"),
        (["request", "n1"], "a token is required"),
        (["request", "n1", "--token", "t", "--server", "http://127.0.0.1:1"], "cannot reach"),
        (["request", "n1", "--token", "t", "--server", "ftp://x"], "must start with http"),
        (["request", "n1", "--token", "t", "--out", "/nonexistent/dir"], "not a directory"),
        (["inspect", "/nonexistent.pem"], "No such file"),
        (["nodes", "add", "x y", "--owner", "a"], "nodeId"),
        (["nodes", "remove", "never-added"], "no node"),
        (["revoke", "zz", "--token", "{token}"], "serial"),
    ],
)
def test_errors_are_one_line_and_non_zero(
    cli_env: tuple[str, Path], capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    url, _ = cli_env
    _run(capsys, "nodes", "add", "someone-elses", "--owner", "erin")
    token = _run(capsys, "dev-token", "frank")[1].strip()
    argv = [a.replace("{token}", token) for a in argv]
    if argv[0] in ("request", "revoke") and "--server" not in argv:
        argv += ["--server", url]
    code, _, err = _run(capsys, *argv)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("nodecert: error: ")
    assert fragment in err
    assert token not in err


def test_inspect_a_foreign_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import trustme

    path = tmp_path / "other.pem"
    path.write_bytes(trustme.CA().issue_cert("example.org").cert_chain_pems[0].bytes())
    code, out, _ = _run(capsys, "inspect", str(path))
    assert code == 0
    assert "no nodecert identity" in out
    path.write_text("junk")
    assert _run(capsys, "inspect", str(path))[0] == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["request"])
    assert exc.value.code == 2
    assert main([]) == 2


def test_nodes_certificate_writes_the_nodes_server_key_and_certificate(
    cli_env: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(capsys, "nodes", "add", "cli-n3", "--owner", "gina")
    code, out, err = _run(
        capsys,
        "nodes",
        "certificate",
        "cli-n3",
        "--dns",
        "n3.example",
        "--dns",
        "n3.lan",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    assert "issued node certificate" in out
    assert stat.S_IMODE((tmp_path / "cli-n3-server.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((tmp_path / "cli-n3-server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n3.example", "n3.lan"]
    assert Identity.from_certificate(cert) == Identity("gina", "cli-n3")
    code, _, err = _run(capsys, "nodes", "certificate", "cli-n3", "--dns", "*.bad")
    assert code == 1
    assert "dnsNames" in err
