"""A hostile or careless user of the CLI: wrong homes, wrong URLs, wrong files."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from nodecert.cli.commands import main
from tests.processes import NODECERT, nodecert_env


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [["nodes", "list"], ["nodes", "add", "n1", "--owner", "a"]])
def test_admin_commands_leave_a_directory_that_is_no_home_alone(
    tmp_path: Path, argv: list[str]
) -> None:
    # NODECERT_HOME pointing at an existing directory of the user's (a typo, $HOME): an
    # admin command must not turn it into a home (a new CA, a dev issuer, chmod 0700).
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    os.chmod(mine, 0o755)
    (mine / "notes.txt").write_text("mine")
    os.chmod(mine / "notes.txt", 0o644)
    env = nodecert_env(mine)
    done = subprocess.run([NODECERT, *argv], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"{mine} is not a nodecert home" in done.stderr
    assert "nodecert init" in done.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert (mine.stat().st_mode & 0o777, (mine / "notes.txt").stat().st_mode & 0o777) == (
        0o755,
        0o644,
    )


def test_dev_token_leaves_a_directory_that_is_no_home_alone(tmp_path: Path) -> None:
    env = nodecert_env(tmp_path)
    done = subprocess.run(
        [NODECERT, "dev-token", "alice"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1 and "nodecert init" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("server", "says"),
    [
        ("http://[::1", "not a URL"),
        ("http://127.0.0.1:99999", "port"),
        ("http://127.0.0.1:abc", "port"),
        ("http://127.0.0.1:8080\n", "not a URL"),
        ("http://exa mple.com", "not a URL"),
        ("http://alice:s3cret@127.0.0.1:9", "user name or password"),
    ],
)
def test_a_bad_server_url_is_one_line_before_any_call(
    server: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["certs", "--token", "t"],
        ["renew", "--cert", str(tmp_path / "x.crt"), "--key", str(tmp_path / "x.key"), "--force"],
    ):
        code, _, err = _run(capsys, *argv, "--server", server)
        assert code == 1, err
        assert err.startswith("nodecert: error: --server: ") and err.count("\n") == 1
        assert says in err and "s3cret" not in err and "cannot reach" not in err


def test_a_private_key_given_as_csr_is_never_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "n1.key").write_bytes(key)
    (tmp_path / "junk.csr").write_text("-----BEGIN CERTIFICATE REQUEST-----\nxx\n")
    # Nothing listens on port 9: an attempt to send would say "cannot reach".
    base = ["request", "n1", "--token", "t", "--server", "http://127.0.0.1:9", "--out"]
    for name, says in (("n1.key", "is a private key"), ("junk.csr", "not a PEM certificate")):
        code, _, err = _run(capsys, *base, str(tmp_path), "--csr", str(tmp_path / name))
        assert code == 1 and err.count("\n") == 1, err
        assert says in err and "cannot reach" not in err and "PRIVATE KEY-" not in err


def test_the_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit status" in out.lower()
    for code in ("0", "1", "2", "130"):
        assert f"{code} " in out


def test_request_on_a_full_disk_fails_before_a_certificate_is_issued(
    env, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from nodecert.http.app import create_app
    from tests.kit import LiveServer

    env.add_node("n1", "alice")
    out = tmp_path / "out"
    out.mkdir()
    real_fsync = os.fsync

    def full(fd: int) -> None:
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with LiveServer(create_app(env.service)) as server:
        monkeypatch.setattr(os, "fsync", full)
        argv = ["request", "n1", "--token", env.token("alice"), "--server", server.url]
        code, _, err = _run(capsys, *argv, "--key-type", "ec-p256", "--out", str(out))
    assert code == 1 and err.count("\n") == 1
    assert "No space left on device" in err and "was issued" not in err
    assert list(out.iterdir()) == []
    listing = env.client.get("/v1/certificates", headers=env.auth("alice")).json()
    assert listing["certificates"] == []


def test_nodes_without_an_action_says_which_are_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["nodes"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: nodecert nodes") and "ACTION" in err


def test_an_unexpected_failure_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    # botocore refusing to build a client without a region, raised from deep inside the
    # SDK: still one line and exit status 1.
    env = nodecert_env(tmp_path)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        env.pop(name, None)
    env["AWS_CONFIG_FILE"] = str(tmp_path / "none")
    done = subprocess.run(
        [NODECERT, "aws", "truststore", "--ca-arn", "x", "--bucket", "b"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert done.stderr.startswith("nodecert: error: ") and "region" in done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["inspect", "/dev/zero"],
        ["renew", "--cert", "/dev/zero", "--key", "/dev/zero", "--server", "http://127.0.0.1:9"],
        ["renew", "--cert", "{cert}", "--key", "/dev/zero", "--server", "http://127.0.0.1:9"],
        ["request", "n1", "--csr", "/dev/zero", "--token", "t", "--server", "http://127.0.0.1:9"],
    ],
)
def test_an_endless_file_is_refused_after_a_bounded_read(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.kit import new_ca, sign

    cert = tmp_path / "n1.crt"
    cert.write_text(sign(new_ca(tmp_path / "ca"), "alice", "n1").pem)
    argv = [a.replace("{cert}", str(cert)) for a in argv]
    code, _, err = _run(capsys, *argv, *(["--out", str(tmp_path)] if argv[0] == "request" else []))
    assert code == 1 and err.count("\n") == 1
    assert "/dev/zero: larger than 1 MiB" in err


def test_an_endless_ca_file_in_the_output_directory_is_a_conflict(
    env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nodecert.http.app import create_app
    from tests.kit import LiveServer

    env.add_node("n1", "alice")
    (tmp_path / "ca.crt").symlink_to("/dev/zero")
    with LiveServer(create_app(env.service)) as server:
        argv = ["request", "n1", "--token", env.token("alice"), "--server", server.url]
        code, _, err = _run(capsys, *argv, "--key-type", "ec-p256", "--out", str(tmp_path))
    assert code == 1 and err.count("\n") == 1
    assert "would overwrite" in err and "ca.crt" in err


@pytest.mark.parametrize("lifetime", ["0", "604801", "99999999999"])
def test_dev_token_lifetime_is_bounded(tmp_path: Path, lifetime: str) -> None:
    env = nodecert_env(tmp_path / "home")
    subprocess.run([NODECERT, "init"], env=env, capture_output=True, check=True)
    done = subprocess.run(
        [NODECERT, "dev-token", "alice", "--lifetime", lifetime],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert "--lifetime: must be between 1 and 604800 seconds" in done.stderr
    week = subprocess.run(
        [NODECERT, "dev-token", "alice", "--lifetime", "604800"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert week.stdout.count(".") == 2


def _unparsable_extensions(path: Path) -> Path:
    # An empty subjectAltName and an empty EKU: RFC 5280 forbids both, cryptography >= 51
    # refuses to read them (lazily, at .extensions), other tools still write them.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(5)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x00"), False
        )
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.EXTENDED_KEY_USAGE, b"\x30\x00"), False
        )
        .sign(key, hashes.SHA256())
    )
    (path / "bad.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (path / "bad.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path / "bad.crt"


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_renewing_a_certificate_cryptography_cannot_read_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], force: list[str]
) -> None:
    cert = _unparsable_extensions(tmp_path)
    code = main(["renew", "--cert", str(cert), "--key", str(tmp_path / "bad.key"), *force])
    err = capsys.readouterr().err
    assert code == 1
    assert err == (
        f"nodecert: error: {cert}: certificate: its extensions are not valid X.509, so it"
        " carries no nodecert identity\n"
    )


def test_inspecting_a_certificate_cryptography_cannot_read_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert = _unparsable_extensions(tmp_path)
    main(["inspect", str(cert)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "extensions are not valid X.509" in captured.out + captured.err
