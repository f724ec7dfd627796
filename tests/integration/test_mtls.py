"""Certificates proven on the wire: real mutual-TLS handshakes, openssl and pkilint."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.core.identity import Identity

from ..conftest import Env
from ..tls import connect, mtls_server


def _ca_pem(env: Env) -> bytes:
    return env.client.get("/v1/ca").content


@pytest.mark.parametrize("key_type", ["rsa-2048", "ec-p256", "ec-p384"])
def test_issued_certificate_completes_a_mutual_tls_handshake(
    env: Env, tmp_path: Path, key_type: str
) -> None:
    env.add_node("n1", "alice")
    issued = env.issue("alice", "n1", keyType=key_type)
    with mtls_server(_ca_pem(env), tmp_path) as (port, server_ca, seen):
        assert (
            connect(port, server_ca, issued["certificate"], issued["privateKey"], tmp_path)
            == b"hello"
        )  # type: ignore[arg-type]
        seen.done.wait(10)
    assert seen.error is None
    assert seen.peer is not None
    # The node reads the identity back out of the peer certificate.
    assert Identity.from_certificate(seen.peer, trust_domain="nodecert.local") == Identity(
        "alice", "n1"
    )


def test_a_certificate_from_another_ca_is_refused(env: Env, tmp_path: Path) -> None:
    foreign = trustme.CA().issue_cert("mallory@example.org")
    with mtls_server(_ca_pem(env), tmp_path) as (port, server_ca, seen):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            connect(
                port,
                server_ca,
                foreign.cert_chain_pems[0].bytes().decode(),
                foreign.private_key_pem.bytes().decode(),
                tmp_path,
            )
        seen.done.wait(10)
    assert isinstance(seen.error, ssl.SSLError)
    assert seen.peer is None


def test_an_expired_certificate_is_refused(env: Env, tmp_path: Path) -> None:
    env.add_node("n1", "alice")
    real_clock = env.service.authority.clock
    env.service.authority.clock = lambda: real_clock() - timedelta(days=3)
    issued = env.issue("alice", "n1", keyType="ec-p256", validityDays=1)
    env.service.authority.clock = real_clock
    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())  # type: ignore[union-attr]
    assert cert.not_valid_after_utc < datetime.now(UTC)
    with mtls_server(_ca_pem(env), tmp_path) as (port, server_ca, seen):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            connect(port, server_ca, issued["certificate"], issued["privateKey"], tmp_path)  # type: ignore[arg-type]
        seen.done.wait(10)
    assert isinstance(seen.error, ssl.SSLError)
    assert "expired" in str(seen.error)


def test_the_wrong_node_is_caught_at_the_identity_check(env: Env, tmp_path: Path) -> None:
    env.add_node("n1", "alice")
    env.add_node("n2", "alice")
    issued = env.issue("alice", "n1", keyType="ec-p256")
    with mtls_server(_ca_pem(env), tmp_path) as (port, server_ca, seen):
        connect(port, server_ca, issued["certificate"], issued["privateKey"], tmp_path)  # type: ignore[arg-type]
        seen.done.wait(10)
    assert seen.peer is not None
    # The chain is ours, so TLS accepts it; the node "n2" must still refuse it.
    assert Identity.from_certificate(seen.peer).node_id != "n2"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary not installed")
def test_openssl_verifies_the_certificate_for_client_auth(env: Env, tmp_path: Path) -> None:
    env.add_node("n1", "alice")
    issued = env.issue("alice", "n1")
    (tmp_path / "ca.pem").write_bytes(_ca_pem(env))
    (tmp_path / "n1.crt").write_text(issued["certificate"])  # type: ignore[arg-type]
    ok = subprocess.run(
        ["openssl", "verify", "-purpose", "sslclient", "-CAfile", "ca.pem", "n1.crt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "n1.crt: OK" in ok.stdout
    # The client profile must not pass as a server certificate.
    server = subprocess.run(
        ["openssl", "verify", "-purpose", "sslserver", "-CAfile", "ca.pem", "n1.crt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert server.returncode != 0


def test_certificates_have_exactly_the_client_profile(env: Env) -> None:
    env.add_node("n1", "alice")
    for key_type, encipherment in (("rsa-2048", True), ("ec-p256", False)):
        cert = x509.load_pem_x509_certificate(
            env.issue("alice", "n1", keyType=key_type)["certificate"].encode()  # type: ignore[union-attr]
        )
        ext = {e.oid.dotted_string: e for e in cert.extensions}
        assert len(ext) == 6
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert basic.critical and basic.value.ca is False
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert usage.critical and usage.value.digital_signature
        assert usage.value.key_encipherment is encipherment
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        assert 0 < cert.serial_number < 2**159
        assert cert.subject.rfc4514_string() == "CN=alice,OU=n1,O=nodecert"


# pkilint checks URIs with the `validators` package, whose url() allow-lists a few schemes
# (http, https, ftp, ...), so every spiffe:// URI is reported as pkix.invalid_uri_syntax
# although it is valid RFC 3986. That one finding, for exactly our URI, is set aside here;
# test_spiffe_uri_is_valid_rfc3986 checks the URI syntax on its own.
_SPIFFE_FALSE_POSITIVE = re.compile(
    r"GeneralNameUriSyntaxValidator @ [\w.]+subjectAltName\.0\.uniformResourceIdentifier\n"
    r"\s+pkix\.invalid_uri_syntax \(ERROR\): Invalid URI syntax: \"spiffe://[^\"]+\"\n?"
)


def pkilint(tool: str, der: bytes, tmp_path: Path) -> str:
    """Run a pkilint command line on ``der``; return its report of ERROR and FATAL findings."""
    path = tmp_path / "document.der"
    path.write_bytes(der)
    result = subprocess.run(
        [str(Path(sys.executable).parent / tool), "lint", "-s", "ERROR", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1) or result.stdout, result.stderr
    return _SPIFFE_FALSE_POSITIVE.sub("", result.stdout).strip()


@pytest.mark.parametrize("key_type", ["rsa-2048", "ec-p256"])
def test_issued_certificates_are_rfc5280_clean_by_pkilint(
    env: Env, tmp_path: Path, key_type: str
) -> None:
    env.add_node("n1", "alice")
    issued = env.issue("alice", "n1", keyType=key_type)
    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())  # type: ignore[union-attr]
    der = cert.public_bytes(serialization.Encoding.DER)
    assert pkilint("lint_pkix_cert", der, tmp_path) == ""
    ca = x509.load_pem_x509_certificate(_ca_pem(env))
    assert pkilint("lint_pkix_cert", ca.public_bytes(serialization.Encoding.DER), tmp_path) == ""


def test_spiffe_uri_is_valid_rfc3986(env: Env) -> None:
    env.add_node("n.1_x-y", "alice")
    cert = x509.load_pem_x509_certificate(
        env.issue("alice", "n.1_x-y", keyType="ec-p256")["certificate"].encode()  # type: ignore[union-attr]
    )
    (uri,) = cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.UniformResourceIdentifier)
    # RFC 3986 appendix B's regular expression, plus the SPIFFE ID rules: no query, no
    # fragment, no port or user info, lower-case trust domain, no empty or dot segments.
    parts = re.fullmatch(r"(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?", uri)
    assert parts is not None
    scheme, authority, path, query, fragment = parts.groups()
    assert (scheme, authority, query, fragment) == ("spiffe", "nodecert.local", None, None)
    segments = path.split("/")[1:]
    assert segments == ["user", "alice", "node", "n.1_x-y"]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", s) and s not in (".", "..") for s in segments)
