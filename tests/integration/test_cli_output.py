"""What the CLI prints and refuses: inspect, verify, serials, help, settings, a 429.

In-process ``cli.main`` against a real uvicorn on a loopback port; certificates written as
PEM and DER files under tmp_path and read back with openssl where users would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.backends.local.ca import LocalCA
from nodecert.cli import main
from nodecert.cli.commands import build_parser
from nodecert.core.identity import parse_serial, serial_for_display
from nodecert.core.values import Principal, RevocationReason
from nodecert.http.app import create_app
from nodecert.issuing.service import Service
from nodecert.issuing.values import IssueRequest
from tests.conftest import ADMIN, make_settings
from tests.kit import LiveServer

OPENSSL = shutil.which("openssl")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    from nodecert.bootstrap import build_service

    built = build_service(make_settings(tmp_path / "home"))
    yield built
    built.close()


@pytest.fixture
def server(service: Service) -> Iterator[str]:
    with LiveServer(create_app(service)) as live:
        yield live.url


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("NODECERT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def issue(service: Service, node: str = "n1", user: str = "alice") -> x509.Certificate:
    if service.authority.nodes.owner_of(node) is None:
        service.administration.put_node(ADMIN, node, user)
    issued = service.authority.issue(
        Principal(user), IssueRequest(node_id=node, request_id=uuid.uuid4().hex, key_type="ec-p256")
    )
    return x509.load_pem_x509_certificate(issued.certificate_pem.encode())


def write(certificate: x509.Certificate, path: Path, encoding=serialization.Encoding.PEM) -> Path:
    path.write_bytes(certificate.public_bytes(encoding))
    return path


# inspect


@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.DER])
def test_inspect_shows_names_usage_key_fingerprint_and_time_left(
    service, tmp_path, capsys, encoding
):
    certificate = issue(service)
    path = write(certificate, tmp_path / "n1.crt", encoding)
    code, out, err = run(capsys, "inspect", str(path))
    assert code == 0, err
    fields = dict(line.split(":", 1) for line in out.splitlines())
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    assert fields["identity"] == "user=alice node=n1"
    assert fields["names"] == "URI:spiffe://nodecert.local/user/alice/node/n1"
    assert fields["key usage"] == "clientAuth"
    assert fields["key"] == "EC secp256r1"
    assert fields["time left"].startswith("6d 23h") or fields["time left"].startswith("7d 0h")
    if OPENSSL:
        done = subprocess.run(
            [OPENSSL, "x509", "-noout", "-serial", "-fingerprint", "-sha256", "-in", str(path)]
            + (["-inform", "DER"] if encoding is serialization.Encoding.DER else []),
            capture_output=True,
            text=True,
            check=True,
        )
        openssl = dict(line.split("=", 1) for line in done.stdout.splitlines())
        assert fields["serial"] == openssl["serial"].lower()  # Same digits, even length.
        assert out.splitlines()[-1].split(None, 1)[1] == openssl["sha256 Fingerprint"]


def test_inspect_json_of_a_node_certificate(service, tmp_path, capsys):
    service.administration.put_node(ADMIN, "n1", "alice")
    issued = service.authority.issue_node_certificate(
        ADMIN, "n1", dns_names=["n1.example"], request_id="r1", key_type="rsa-2048"
    )
    path = tmp_path / "server.crt"
    path.write_text(issued.certificate_pem)
    code, out, _ = run(capsys, "inspect", str(path), "--json")
    assert code == 0
    facts = json.loads(out)
    assert facts["extendedKeyUsage"] == ["serverAuth", "clientAuth"]
    assert "DNS:n1.example" in facts["subjectAltNames"]
    assert facts["keyType"] == "RSA 2048 bits"
    assert facts["serialNumber"] == issued.record.serial
    assert len(facts["serial"]) % 2 == 0


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", "not a PEM"),
        (b"\x30\x03\x02\x01\x01", "not a DER certificate"),
        (b"", "not a DER certificate"),
        # A key's armour, assembled here: no tracked file holds a private-key header.
        (b"-----BEGIN %b-----\nAAAA\n-----END %b-----\n" % ((b"PRIVATE KEY",) * 2), "not a PEM"),
    ],
)
def test_inspect_a_file_that_is_no_certificate_is_one_line_naming_it(
    tmp_path, capsys, content, fragment
):
    path = tmp_path / "broken.crt"
    path.write_bytes(content)
    code, out, err = run(capsys, "inspect", str(path))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and str(path) in err and fragment in err
    assert "AAAA" not in err  # Never echo what may be key material.


@settings(max_examples=60, deadline=None, database=None)
@given(st.binary(max_size=600))
def test_inspect_never_fails_with_more_than_one_line(data):
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "x.crt"
        path.write_bytes(data)
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["inspect", str(path)])
        assert code in (0, 1)
        assert err.getvalue().count("\n") <= 1


# verify


def test_verify_a_good_certificate_then_a_revoked_one(service, server, tmp_path, capsys):
    certificate = issue(service)
    path = write(certificate, tmp_path / "n1.crt")
    code, out, err = run(capsys, "verify", str(path), "--server", server)
    assert code == 0, err
    assert "chains to the CA, valid, not revoked" in out
    service.administration.revoke(
        ADMIN, format(certificate.serial_number, "x"), RevocationReason.KEY_COMPROMISE
    )
    code, out, err = run(capsys, "verify", str(path), "--server", server)
    assert (code, out) == (1, "")
    assert "status: revoked at the service" in err and err.count("\n") == 1
    token = service.dev_issuer.mint("alice")
    code, out, err = run(
        capsys, "verify", str(path), "--server", server, "--token", token, "--json"
    )
    assert code == 1
    assert json.loads(out)["status"] == "revoked"


def test_verify_refuses_a_foreign_ca_and_an_expired_certificate(service, tmp_path, capsys):
    certificate = issue(service)
    path = write(certificate, tmp_path / "n1.crt")
    foreign = LocalCA.generate(organization="nodecert", trust_domain="nodecert.local")
    foreign_path = write(foreign.chain()[0], tmp_path / "foreign.pem")
    code, _, err = run(capsys, "verify", str(path), "--ca", str(foreign_path), "--offline")
    assert code == 1 and "chain:" in err
    # The service's chain (issuing intermediate, root), as GET /v1/ca and ca.crt give it.
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in service.authority.ca.chain())
    )
    assert run(capsys, "verify", str(path), "--ca", str(ca_path), "--offline")[0] == 0

    from nodecert.core.identity import Identity
    from nodecert.core.keys import KeyType, generate_private_key
    from nodecert.core.values import SigningRequest

    key = generate_private_key(KeyType.EC_P256)
    past = datetime.now(UTC) - timedelta(days=10)
    old = service.authority.ca.issue(
        SigningRequest(
            csr=None,
            identity=Identity("alice", "n1"),
            not_before=past,
            not_after=past + timedelta(days=1),
            request_id="old",
            public_key=key.public_key(),
        )
    )
    old_path = write(old.certificate, tmp_path / "old.crt")
    code, _, err = run(capsys, "verify", str(old_path), "--ca", str(ca_path), "--offline")
    assert code == 1 and "validity: expired at" in err


def test_verify_offline_needs_the_ca(tmp_path, capsys, service):
    path = write(issue(service), tmp_path / "n1.crt")
    assert run(capsys, "verify", str(path), "--offline")[0] == 2


# Serials, help, settings, 429


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(min_value=1, max_value=2**159 - 1))
def test_a_displayed_serial_is_whole_octets_and_parses_back(serial):
    shown = serial_for_display(serial)
    assert len(shown) % 2 == 0 and shown == shown.lower()
    assert parse_serial(shown) == serial
    assert parse_serial(shown.upper()) == serial
    assert serial_for_display(format(serial, "x")) == shown


def _actions(parser: argparse.ArgumentParser, path: list[str]):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield [*path, choice.dest], choice
            for name, child in action.choices.items():
                yield from _actions(child, [*path, name])
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield path, action


def test_every_command_and_option_has_help_text():
    missing = [
        " ".join([*path, action.dest])
        for path, action in _actions(build_parser(), ["nodecert"])
        if not action.help
    ]
    assert missing == []


COMMANDS = [
    ["certs"],
    ["request", "n1"],
    ["revoke", "0a"],
    ["revoke-all", "--node", "n1"],
    ["renew", "--cert", "a.crt", "--key", "a.key"],
    ["nodes", "list"],
    ["inspect", "a.crt"],
    ["verify", "a.crt"],
    ["user-id", "alice"],
    ["dev-token", "alice"],
    ["init"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_refuses_a_misspelt_setting(argv, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("NODECERT_SERVR", "http://127.0.0.1:9")
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    assert err == (
        "nodecert: error: unknown setting(s): NODECERT_SERVR (did you mean NODECERT_SERVER?)\n"
    )
    assert list(tmp_path.iterdir()) == []  # Nothing created (init, dev-token).


def test_a_429_says_when_to_retry(tmp_path, capsys):
    from nodecert.bootstrap import build_service

    limited = build_service(make_settings(tmp_path / "limited", quota_per_minute=1, quota_burst=1))
    try:
        limited.administration.put_node(ADMIN, "n1", "alice")
        token = limited.dev_issuer.mint("alice")
        with LiveServer(create_app(limited)) as live:
            common = ["--server", live.url, "--token", token, "--key-type", "ec-p256", "--out"]
            assert run(capsys, "request", "n1", *common, str(tmp_path))[0] == 0
            (tmp_path / "second").mkdir()
            code, _, err = run(capsys, "request", "n1", *common, str(tmp_path / "second"))
    finally:
        limited.close()
    assert code == 1 and err.count("\n") == 1
    assert "HTTP 429" in err
    seconds = int(err.rsplit("retry in ", 1)[1].split(" s")[0])
    assert 1 <= seconds <= 60


# request: chosen file names, full chain, PKCS#12


def _request(capsys, server, service, *argv):
    token = service.dev_issuer.mint("alice")
    return run(capsys, "request", "n1", "--server", server, "--token", token, *argv)


def test_request_writes_chosen_files_a_full_chain_and_a_pkcs12(service, server, tmp_path, capsys):
    from cryptography.hazmat.primitives.serialization import pkcs12

    service.administration.put_node(ADMIN, "n1", "alice")
    (tmp_path / "tls").mkdir()
    (tmp_path / "secret").mkdir()
    password_file = tmp_path / "secret" / "p12.pass"
    password_file.write_text("s3cret pass\n")
    code, out, err = _request(
        capsys,
        server,
        service,
        "--key-type",
        "ec-p256",
        "--cert-file",
        str(tmp_path / "tls" / "client.pem"),
        "--key-file",
        str(tmp_path / "secret" / "client.key"),
        "--chain-file",
        str(tmp_path / "tls" / "chain.pem"),
        "--fullchain-file",
        str(tmp_path / "tls" / "fullchain.pem"),
        "--p12",
        str(tmp_path / "secret" / "client.p12"),
        "--p12-password-file",
        str(password_file),
        "--json",
    )
    assert code == 0, err
    document = json.loads(out)
    assert set(document["files"]) == {"certificate", "privateKey", "chain", "fullChain", "pkcs12"}
    assert "s3cret" not in out + err
    cert_pem = (tmp_path / "tls" / "client.pem").read_bytes()
    chain_pem = (tmp_path / "tls" / "chain.pem").read_bytes()
    full = x509.load_pem_x509_certificates((tmp_path / "tls" / "fullchain.pem").read_bytes())
    assert full == [
        x509.load_pem_x509_certificate(cert_pem),
        *x509.load_pem_x509_certificates(chain_pem),
    ]
    p12 = tmp_path / "secret" / "client.p12"
    assert p12.stat().st_mode & 0o777 == 0o600
    loaded = pkcs12.load_pkcs12(p12.read_bytes(), b"s3cret pass")
    assert loaded.cert.certificate == x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(
        (tmp_path / "secret" / "client.key").read_bytes(), None
    )
    assert loaded.key.public_key() == key.public_key()
    assert [c.certificate for c in loaded.additional_certs] == x509.load_pem_x509_certificates(
        chain_pem
    )
    with pytest.raises(ValueError, match=r"(?i)password"):
        pkcs12.load_pkcs12(p12.read_bytes(), b"wrong")
    if OPENSSL:
        done = subprocess.run(
            [
                OPENSSL,
                "pkcs12",
                "-info",
                "-noout",
                "-in",
                str(p12),
                "-passin",
                f"file:{password_file}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "AES-256-CBC" in done.stderr and "PBKDF2" in done.stderr


@pytest.mark.parametrize(
    ("argv", "fragment", "status"),
    [
        (["--p12-password-file", "x"], "only with --p12", 2),
        (["--p12", "c.p12"], "no terminal to ask on", 1),
        (["--p12", "c.p12", "--p12-password-file", "/nonexistent"], "No such file", 1),
        (["--cert-file", "same.pem", "--chain-file", "same.pem"], "different files", 2),
        (["--key-file", "/nonexistent/dir/k.key"], "not a directory", 1),
    ],
)
def test_request_refuses_bad_file_options_before_anything_is_issued(
    service, server, tmp_path, capsys, monkeypatch, argv, fragment, status
):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # Not a terminal.
    service.administration.put_node(ADMIN, "n1", "alice")
    code, _, err = _request(capsys, server, service, *argv)
    assert code == status and fragment in err and err.count("\n") == 1
    assert service.authority.ledger.find(node_id="n1") == []


def test_request_with_a_csr_refuses_a_pkcs12(service, server, tmp_path, capsys):
    from nodecert.core.identity import Identity
    from nodecert.core.keys import KeyType, build_csr, generate_private_key

    key = generate_private_key(KeyType.EC_P256)
    csr = build_csr(key, Identity("alice", "n1"), organization="x", trust_domain="nodecert.local")
    path = tmp_path / "n1.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    code, _, err = _request(capsys, server, service, "--csr", str(path), "--p12", "x.p12")
    assert code == 2 and "not with --csr" in err


def test_renew_keeps_a_pkcs12_in_step_and_says_so_in_json(service, server, tmp_path, capsys):
    from cryptography.hazmat.primitives.serialization import pkcs12

    from tests.kit import issue as issue_pair
    from tests.kit import write_client

    cert, key = write_client(
        issue_pair(service.authority, "alice", "n1", admin=service.administration), tmp_path, "n1"
    )
    password = tmp_path / "p12.pass"
    password.write_text("pw-1\n")
    p12 = tmp_path / "n1.p12"
    common = ["renew", "--cert", str(cert), "--key", str(key), "--server", server]
    p12_args = ["--p12", str(p12), "--p12-password-file", str(password), "--json"]

    code, out, err = run(capsys, *common, *p12_args)  # Not due: the missing p12 is written.
    assert code == 0, err
    document = json.loads(out)
    assert (document["renewed"], document["pkcs12"]) == (False, str(p12))
    first = pkcs12.load_pkcs12(p12.read_bytes(), b"pw-1")
    assert first.cert.certificate == x509.load_pem_x509_certificate(cert.read_bytes())

    code, out, err = run(capsys, *common, *p12_args, "--force")
    assert code == 0, err
    assert json.loads(out)["renewed"] is True
    renewed = pkcs12.load_pkcs12(p12.read_bytes(), b"pw-1")
    assert renewed.cert.certificate == x509.load_pem_x509_certificate(cert.read_bytes())
    assert renewed.cert.certificate != first.cert.certificate
    new_key = serialization.load_pem_private_key(key.read_bytes(), None)
    assert renewed.key.public_key() == new_key.public_key()
    assert "pw-1" not in out + err


def test_renew_asks_for_the_pkcs12_password_before_renewing(service, server, tmp_path, capsys):
    import io

    from tests.kit import issue as issue_pair
    from tests.kit import write_client

    cert, key = write_client(
        issue_pair(service.authority, "alice", "n1", admin=service.administration), tmp_path, "n1"
    )
    before = cert.read_bytes()
    stdin = io.StringIO("")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", stdin)
        argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", server, "--force"]
        code, _, err = run(capsys, *argv, "--p12", str(tmp_path / "n1.p12"))
    assert code == 1 and "no terminal" in err
    assert cert.read_bytes() == before  # Not renewed: nothing was sent.


def test_dev_token_json(service, capsys, monkeypatch):
    monkeypatch.setenv("NODECERT_HOME", str(service.settings.home))
    code, out, _ = run(capsys, "dev-token", "alice", "--admin", "--json")
    assert code == 0
    document = json.loads(out)
    assert (document["userId"], document["admin"], document["lifetime"]) == ("alice", True, 3600)
    principal = service.verifier.verify(document["token"])
    assert principal.user_id == "alice" and principal.is_admin
