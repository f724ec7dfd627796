"""The two-tier local CA (issue 19): root + issuing intermediate, and old one-tier homes.

Failure paths first: a root that may not sign intermediates, a mismatched home, a leaf that
would outlive its issuer, hostile CSRs for ``sign-intermediate``. Then certificates on the
wire: ``openssl verify``, pkilint and real mutual-TLS handshakes, for a new two-tier home
and for a one-tier home as earlier versions made it.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.backends.local.ca import LocalCA
from nodecert.backends.local.hierarchy import (
    key_bytes,
    make_root,
    make_single_root,
    sign_intermediate,
)
from nodecert.bootstrap import build_decider, build_service
from nodecert.cli import main
from nodecert.core.config import Settings
from nodecert.core.errors import BackendUnavailableError, ConfigurationError, CSRError
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, generate_private_key
from nodecert.core.values import Principal, RevocationReason, SigningRequest
from nodecert.issuing.authority import IssueRequest
from nodecert.issuing.service import Service
from tests.kit import ADMIN

from ..tls import connect, mtls_server
from .test_mtls import pkilint

_BAD_BASE64_CSR = b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
NOW = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
OPENSSL = shutil.which("openssl")


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _csr(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cn: str = "Acme issuing CA 2"
) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]) if cn else x509.Name([])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def _issue(service: Service, user: str = "alice", node: str = "n1"):  # type: ignore[no-untyped-def]
    if service.authority.nodes.owner_of(node) is None:
        service.administration.put_node(ADMIN, node, user)
    return service.authority.issue(
        Principal(user), IssueRequest(node_id=node, request_id=uuid.uuid4().hex, key_type="ec-p256")
    )


def _lint_crl(der: bytes, tmp_path: Path) -> str:
    path = tmp_path / "crl.der"
    path.write_bytes(der)
    tool = Path(sys.executable).parent / "lint_crl"
    result = subprocess.run(
        [str(tool), "lint", "-t", "CRL", "-p", "PKIX", "-s", "ERROR", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1) or result.stdout, result.stderr
    return result.stdout.strip()


def _one_tier_home(home: Path) -> x509.Certificate:
    """A home as nodecert made it before issue 19: ca.key + a self-signed ca.crt only."""
    directory = home / "ca"
    directory.mkdir(parents=True, mode=0o700)
    key = generate_private_key(KeyType.EC_P256)
    root = make_single_root(key, "nodecert", datetime.now(UTC))
    (directory / "ca.key").write_bytes(key_bytes(key, None))
    (directory / "ca.key").chmod(0o600)
    (directory / "ca.crt").write_text(_pem(root))
    (directory / "ca.crt").chmod(0o600)
    return root


@pytest.fixture
def two_tier(tmp_path: Path) -> Iterator[Service]:
    service = build_service(Settings(home=tmp_path / "home"))
    yield service
    service.close()


@pytest.fixture
def one_tier(tmp_path: Path) -> Iterator[Service]:
    _one_tier_home(tmp_path / "home")
    service = build_service(Settings(home=tmp_path / "home"))
    yield service
    service.close()


# Failure paths.


def test_a_one_tier_root_cannot_sign_an_intermediate() -> None:
    key = generate_private_key(KeyType.EC_P256)
    old_root = make_single_root(key, "nodecert", NOW)
    with pytest.raises(ConfigurationError, match="path length 0"):
        sign_intermediate(
            _csr(generate_private_key(KeyType.EC_P256)), root_key=key, root=old_root, now=NOW
        )


def test_a_root_key_that_is_not_the_roots_is_refused() -> None:
    root = make_root(generate_private_key(KeyType.EC_P256), "nodecert", NOW)
    with pytest.raises(ConfigurationError, match="does not match"):
        sign_intermediate(
            _csr(generate_private_key(KeyType.EC_P256)),
            root_key=generate_private_key(KeyType.EC_P256),
            root=root,
            now=NOW,
        )


def test_an_intermediate_never_outlives_its_root_and_an_expired_root_signs_nothing() -> None:
    root_key = generate_private_key(KeyType.EC_P256)
    root = make_root(root_key, "nodecert", NOW, lifetime=timedelta(days=30))
    intermediate = sign_intermediate(
        _csr(generate_private_key(KeyType.EC_P256)), root_key=root_key, root=root, now=NOW
    )
    assert intermediate.not_valid_after_utc == root.not_valid_after_utc
    with pytest.raises(ConfigurationError, match="expired"):
        sign_intermediate(
            _csr(generate_private_key(KeyType.EC_P256)),
            root_key=root_key,
            root=root,
            now=NOW + timedelta(days=31),
        )


@pytest.mark.parametrize(
    ("csr", "message"),
    [
        (b"", "one PEM block"),
        (_BAD_BASE64_CSR, "parsable"),
        (b"x" * 20000, "limit"),
    ],
)
def test_unreadable_csrs_are_csr_errors(csr: bytes, message: str) -> None:
    root_key = generate_private_key(KeyType.EC_P256)
    root = make_root(root_key, "nodecert", NOW)
    with pytest.raises(CSRError, match=message):
        sign_intermediate(csr, root_key=root_key, root=root, now=NOW)


def test_weak_keys_bad_signatures_and_empty_names_are_refused() -> None:
    root_key = generate_private_key(KeyType.EC_P256)
    root = make_root(root_key, "nodecert", NOW)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(CSRError, match="too weak"):
        sign_intermediate(_csr(weak), root_key=root_key, root=root, now=NOW)
    with pytest.raises(CSRError, match="subject is empty"):
        sign_intermediate(
            _csr(generate_private_key(KeyType.EC_P256), cn=""),
            root_key=root_key,
            root=root,
            now=NOW,
        )
    good = x509.load_pem_x509_csr(_csr(generate_private_key(KeyType.EC_P256)))
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # Inside the signature value.
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CSRError):
        sign_intermediate(tampered, root_key=root_key, root=root, now=NOW)


_ROOT_KEY = generate_private_key(KeyType.EC_P256)
_ROOT = make_root(_ROOT_KEY, "nodecert", NOW)
_GOOD_CSR = _csr(generate_private_key(KeyType.EC_P256))


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2048),
        # A valid CSR with bytes flipped, cut or appended: the hostile class near real input.
        st.tuples(st.integers(0, len(_GOOD_CSR) - 1), st.binary(min_size=1, max_size=8)).map(
            lambda cut: _GOOD_CSR[: cut[0]] + cut[1] + _GOOD_CSR[cut[0] + len(cut[1]) :]
        ),
    )
)
def test_any_bytes_as_a_csr_sign_or_raise_a_csr_error(data: bytes) -> None:
    try:
        signed = sign_intermediate(data, root_key=_ROOT_KEY, root=_ROOT, now=NOW)
    except CSRError:
        return
    signed.verify_directly_issued_by(_ROOT)


def test_a_leaf_that_would_outlive_the_issuing_ca_is_refused() -> None:
    ca = LocalCA.generate(organization="nodecert", trust_domain="nodecert.local", two_tier=True)
    end = ca.certificate.not_valid_after_utc
    request = SigningRequest(
        csr=None,
        identity=Identity("alice", "n1"),
        not_before=end - timedelta(days=1),
        not_after=end + timedelta(seconds=1),
        request_id="r",
        public_key=generate_private_key(KeyType.EC_P256).public_key(),
    )
    with pytest.raises(BackendUnavailableError, match="rotate"):
        ca.issue(request)


def test_a_home_whose_issuing_ca_the_root_did_not_sign_is_refused(tmp_path: Path) -> None:
    build_service(Settings(home=tmp_path / "a")).close()
    build_service(Settings(home=tmp_path / "b")).close()
    (tmp_path / "a" / "ca" / "root.crt").write_bytes(
        (tmp_path / "b" / "ca" / "root.crt").read_bytes()
    )
    with pytest.raises(ConfigurationError, match="is not signed by"):
        build_service(Settings(home=tmp_path / "a"))


def test_ca_init_refuses_an_existing_root_key_file_and_an_existing_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NODECERT_HOME", str(tmp_path / "home"))
    taken = tmp_path / "root.key"
    taken.write_text("precious")
    assert main(["ca", "init", "--root-key-out", str(taken)]) == 1
    assert taken.read_text() == "precious"
    assert "exists already" in capsys.readouterr().err
    assert not (tmp_path / "home" / "ca" / "ca.key").exists()
    assert main(["ca", "init"]) == 0
    assert main(["ca", "init"]) == 1
    assert "has a CA already" in capsys.readouterr().err


# The new two-tier home.


def test_a_new_home_is_a_root_and_an_issuing_intermediate(
    two_tier: Service, tmp_path: Path
) -> None:
    directory = tmp_path / "home" / "ca"
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) == [
        "ca.crt",
        "ca.key",
        "root.crt",
        "root.key",
    ]
    assert all(p.stat().st_mode & 0o077 == 0 for p in directory.iterdir())
    intermediate, root = two_tier.authority.ca.chain()
    assert root.issuer == root.subject
    assert intermediate.issuer == root.subject
    intermediate.verify_directly_issued_by(root)
    basic = intermediate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = intermediate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    issued = _issue(two_tier)
    assert issued.chain_pem == _pem(intermediate) + _pem(root)
    assert x509.load_pem_x509_certificate(issued.certificate_pem.encode()).issuer == (
        intermediate.subject
    )
    assert two_tier.authority.ca_roots_pem() == _pem(root)


def test_get_ca_serves_the_chain_and_get_ca_roots_the_root(env) -> None:  # type: ignore[no-untyped-def]
    chain = x509.load_pem_x509_certificates(env.client.get("/v1/ca").content)
    roots = x509.load_pem_x509_certificates(env.client.get("/v1/ca/roots").content)
    assert len(chain) == 2 and roots == chain[1:]
    reply = env.client.get("/v1/ca/roots")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/x-pem-file")
    assert "/v1/ca/roots" in env.client.get("/openapi.json").json()["paths"]


def test_the_service_runs_with_the_root_key_taken_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home, offline = tmp_path / "home", tmp_path / "usb" / "root.key"
    offline.parent.mkdir()
    monkeypatch.setenv("NODECERT_HOME", str(home))
    monkeypatch.setenv("NODECERT_CA_PASSPHRASE", "correct horse battery")
    assert main(["ca", "init", "--root-key-out", str(offline)]) == 0
    out = capsys.readouterr()
    assert "correct horse" not in out.out + out.err
    assert not (home / "ca" / "root.key").exists()
    assert offline.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED" in offline.read_bytes()
    service = build_service(Settings(home=home, ca_passphrase="correct horse battery"))
    try:
        issued = _issue(service)
        leaf = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
        assert service.authority.ca.chain()[0].subject == leaf.issuer
    finally:
        service.close()
    # The offline root signs a new intermediate from a CSR.
    new_key = generate_private_key(KeyType.EC_P256)
    (tmp_path / "new.csr").write_bytes(_csr(new_key))
    signed = tmp_path / "new.crt"
    argv = [
        "ca",
        "sign-intermediate",
        str(tmp_path / "new.csr"),
        "--root-key",
        str(offline),
        "--root-cert",
        str(home / "ca" / "root.crt"),
        "--out",
        str(signed),
    ]
    assert main(argv) == 0
    intermediate = x509.load_pem_x509_certificate(signed.read_bytes())
    root = x509.load_pem_x509_certificate((home / "ca" / "root.crt").read_bytes())
    intermediate.verify_directly_issued_by(root)
    assert intermediate.public_key() == new_key.public_key()
    assert pkilint("lint_pkix_cert", _der(intermediate), tmp_path) == ""
    assert main(argv) == 1  # --out exists: never replaced.
    monkeypatch.setenv("NODECERT_CA_PASSPHRASE", "wrong")
    signed.unlink()
    assert main(argv) == 1
    assert "wrong NODECERT_CA_PASSPHRASE" in capsys.readouterr().err
    assert not signed.exists()


# On the wire, for both kinds of home.


@pytest.fixture(params=["two-tier", "one-tier"])
def any_home(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    if request.param == "one-tier":
        _one_tier_home(tmp_path / "home")
    service = build_service(Settings(home=tmp_path / "home"))
    yield service
    service.close()


def test_pkilint_finds_nothing_in_root_intermediate_leaf_and_crl(
    any_home: Service, tmp_path: Path
) -> None:
    issued = _issue(any_home)
    any_home.administration.revoke(ADMIN, issued.record.serial, RevocationReason.KEY_COMPROMISE)
    for certificate in any_home.authority.ca.chain():
        assert pkilint("lint_pkix_cert", _der(certificate), tmp_path) == "", certificate.subject
    leaf = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert pkilint("lint_pkix_cert", _der(leaf), tmp_path) == ""
    assert any_home.crl is not None
    crl = any_home.crl.published().der
    assert _lint_crl(crl, tmp_path) == ""
    # The CRL is the issuing CA's: its name, its key, and the revoked leaf in it.
    parsed = x509.load_der_x509_crl(crl)
    issuing = any_home.authority.ca.chain()[0]
    assert parsed.issuer == issuing.subject
    assert parsed.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    assert parsed.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None


@pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")
def test_openssl_verifies_leaves_against_the_root_alone(any_home: Service, tmp_path: Path) -> None:
    issued = _issue(any_home)
    chain = list(any_home.authority.ca.chain())
    (tmp_path / "root.pem").write_text(any_home.authority.ca_roots_pem())
    (tmp_path / "untrusted.pem").write_text("".join(_pem(c) for c in chain[:-1]) or _pem(chain[0]))
    (tmp_path / "leaf.pem").write_text(issued.certificate_pem)
    command = [OPENSSL, "verify", "-purpose", "sslclient", "-CAfile", "root.pem"]
    ok = subprocess.run(
        [*command, "-untrusted", "untrusted.pem", "leaf.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    if len(chain) == 2:
        # Without the intermediate, the root alone cannot vouch for the leaf.
        alone = subprocess.run(
            [*command, "leaf.pem"], cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert alone.returncode != 0


def test_a_mutual_tls_handshake_with_a_root_only_trust_store(
    any_home: Service, tmp_path: Path
) -> None:
    issued = _issue(any_home)
    roots = any_home.authority.ca_roots_pem().encode()
    # The client presents its leaf and the chain the service returned (as nginx, curl and
    # Python do with a certificate file holding both); the server trusts the root only.
    presented = issued.certificate_pem + issued.chain_pem
    with mtls_server(roots, tmp_path) as (port, server_ca, seen):
        assert connect(port, server_ca, presented, issued.private_key_pem, tmp_path) == b"hello"
        seen.done.wait(10)
    assert seen.error is None and seen.peer is not None
    assert Identity.from_certificate(seen.peer) == Identity("alice", "n1")
    # And the node-side decision allows it, from the home's files alone.
    decider = build_decider(Settings(home=tmp_path / "home"))
    assert decider.decide(issued.certificate_pem, "n1").allowed
    assert not decider.decide(issued.certificate_pem, "n2").allowed


def test_a_certificate_from_a_foreign_two_tier_ca_is_refused(
    two_tier: Service, tmp_path: Path
) -> None:
    foreign = trustme.CA().create_child_ca().issue_cert("mallory@example.org")
    with mtls_server(two_tier.authority.ca_chain_pem().encode(), tmp_path) as (port, ca, seen):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            connect(
                port,
                ca,
                "".join(p.bytes().decode() for p in foreign.cert_chain_pems),
                foreign.private_key_pem.bytes().decode(),
                tmp_path,
            )
        seen.done.wait(10)
    assert isinstance(seen.error, ssl.SSLError)
    decider = build_decider(Settings(home=tmp_path / "home"))
    leaf = foreign.cert_chain_pems[0].bytes()
    assert decider.decide(leaf, "n1").reason.value == "untrusted_issuer"  # type: ignore[union-attr]
