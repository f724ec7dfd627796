"""Renewal keeps what it renews, at most once, without using up the per-node cap.

Over HTTP (``POST /v1/renew`` on the embedded default: local CA, SQLite), with real TLS
handshakes for the renewed node certificate and pkilint/openssl on what it looks like.
"""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from fastapi.testclient import TestClient

from nodecert.bootstrap import build_service
from nodecert.http.app import create_app
from nodecert.issuing.renewal import mint_renewal_token, renewal_audience
from tests.fakes import race

from ..conftest import Env, make_settings
from ..integration.test_mtls import pkilint


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Env]:
    service = build_service(make_settings(tmp_path / "home", max_active_per_node=1))
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield Env(service, client)
    service.close()


def _renew(env: Env, issued: dict[str, Any]) -> Any:
    certificate = x509.load_pem_x509_certificate(str(issued["certificate"]).encode())
    key = serialization.load_pem_private_key(str(issued["privateKey"]).encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    audience = renewal_audience(env.service.settings.trust_domain)
    token = mint_renewal_token(certificate, key, audience=audience)
    return env.client.post("/v1/renew", headers={"Authorization": f"Bearer {token}"})


def _node_certificate(env: Env, names: list[str], **body: object) -> dict[str, Any]:
    response = env.client.post(
        "/v1/nodes/n1/certificate",
        json={"dnsNames": names, **body},
        headers=env.auth("root", admin=True),
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _serve_once(cert: Path, key: Path, ca: Path, seen: list[str]) -> tuple[socket.socket, Any]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
                seen.append("handshake")
        except (OSError, ssl.SSLError) as exc:
            seen.append(f"failed: {exc}")

    thread = threading.Thread(target=serve)
    thread.start()
    return listener, thread


def _connect(port: int, ca: Path, client: tuple[Path, Path], hostname: str) -> bytes:
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(*client)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=20) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        return tls.recv(2)


def test_a_renewed_node_certificate_still_serves_tls_under_its_names(
    env: Env, tmp_path: Path
) -> None:
    env.add_node("n1", "alice")
    first = _node_certificate(env, ["n1.nodes.example", "n1.internal.example"], keyType="ec-p384")
    response = _renew(env, first)
    assert response.status_code == 201, response.text
    renewed = response.json()
    assert renewed["renewedFrom"] == first["serialNumber"]
    cert = x509.load_pem_x509_certificate(renewed["certificate"].encode())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1.nodes.example", "n1.internal.example"]
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp384r1"
    assert renewed["privateKey"] != first["privateKey"]  # A fresh key of the same type.
    assert pkilint("lint_pkix_cert", cert.public_bytes(serialization.Encoding.DER), tmp_path) == ""
    row = env.service.authority.ledger.get(renewed["serialNumber"])
    assert row is not None and row.profile.value == "node"
    assert row.dns_names == ("n1.nodes.example", "n1.internal.example")

    files = {
        "server.crt": renewed["certificate"],
        "server.key": renewed["privateKey"],
        "ca.crt": env.client.get("/v1/ca").text,
    }
    client = env.issue("alice", "n1", keyType="ec-p256")
    files |= {"client.crt": client["certificate"], "client.key": client["privateKey"]}
    for name, text in files.items():
        (tmp_path / name).write_text(str(text))
    if shutil.which("openssl"):
        check = subprocess.run(
            [
                "openssl",
                "verify",
                "-purpose",
                "sslserver",
                "-CAfile",
                tmp_path / "ca.crt",
                tmp_path / "server.crt",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    pair = (tmp_path / "client.crt", tmp_path / "client.key")
    for hostname, works in (("n1.internal.example", True), ("n2.nodes.example", False)):
        seen: list[str] = []
        listener, thread = _serve_once(
            tmp_path / "server.crt", tmp_path / "server.key", tmp_path / "ca.crt", seen
        )
        port = listener.getsockname()[1]
        if works:
            assert _connect(port, tmp_path / "ca.crt", pair, hostname) == b"ok"
        else:
            with pytest.raises(ssl.SSLCertVerificationError, match="match"):
                _connect(port, tmp_path / "ca.crt", pair, hostname)
        thread.join(20)
        listener.close()
        assert bool(seen and seen[0] == "handshake") is works


def test_a_certificate_renews_once_and_a_second_renewal_is_a_logged_409(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.add_node("n1", "alice")
    first = env.issue("alice", "n1", keyType="ec-p256")
    assert _renew(env, first).status_code == 201
    with caplog.at_level(logging.WARNING, logger="nodecert.renewal"):
        again = _renew(env, first)
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "already_renewed"
    assert "stolen" in caplog.text and str(first["serialNumber"]) in caplog.text
    listed = env.client.get("/v1/certificates", headers=env.auth("alice")).json()
    by_serial = {c["serialNumber"]: c for c in listed["certificates"]}
    assert len(by_serial) == 2  # The refused renewal recorded nothing.
    old = by_serial[str(first["serialNumber"])]
    assert old["status"] == "superseded"
    assert by_serial[old["supersededBy"]]["renewedFrom"] == first["serialNumber"]


def test_a_superseded_certificate_is_still_allowed_until_it_expires(env: Env) -> None:
    env.add_node("n1", "alice")
    first = env.issue("alice", "n1", keyType="ec-p256")
    assert _renew(env, first).status_code == 201
    certificate = x509.load_pem_x509_certificate(str(first["certificate"]).encode())
    decision = env.service.decider.decide(certificate, "n1")
    assert decision.allowed, decision


def test_renewals_do_not_use_up_the_per_node_cap(capped: Env) -> None:
    capped.add_node("n1", "alice")
    current = capped.issue("alice", "n1", keyType="ec-p256")
    refused = capped.client.post(
        "/generate-cert", json={"nodeId": "n1"}, headers=capped.auth("alice")
    )
    assert refused.status_code == 429  # The cap is 1, and it is used.
    for _ in range(4):
        response = _renew(capped, current)
        assert response.status_code == 201, response.text
        current = response.json()
    listed = capped.client.get("/v1/certificates?status=active", headers=capped.auth("alice"))
    assert [c["serialNumber"] for c in listed.json()["certificates"]] == [current["serialNumber"]]
    superseded = capped.client.get(
        "/v1/certificates?status=superseded", headers=capped.auth("alice")
    )
    assert len(superseded.json()["certificates"]) == 4


def test_two_racing_renewals_of_one_certificate_issue_exactly_one(env: Env) -> None:
    env.add_node("n1", "alice")
    first = env.issue("alice", "n1", keyType="ec-p256")
    statuses = sorted(r.status_code for r in race(4, lambda _: _renew(env, first)))
    assert statuses == [201, 409, 409, 409]
    rows = env.service.authority.ledger.find(node_id="n1")
    assert len(rows) == 2


def test_a_csr_renewal_of_a_node_certificate_keeps_profile_names_and_lifetime(env: Env) -> None:
    # What `nodecert renew` does: a fresh key made by the client, only its CSR sent.
    from cryptography.x509.oid import NameOID

    env.add_node("n1", "alice")
    first = _node_certificate(env, ["n1.nodes.example"], keyType="ec-p256", validityDays=3)
    old = x509.load_pem_x509_certificate(first["certificate"].encode())
    old_key = serialization.load_pem_private_key(first["privateKey"].encode(), password=None)
    assert isinstance(old_key, ec.EllipticCurvePrivateKey)
    new_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
        .sign(new_key, hashes.SHA256())
    )
    token = mint_renewal_token(
        old, old_key, audience=renewal_audience(env.service.settings.trust_domain)
    )
    response = env.client.post(
        "/v1/renew",
        json={"csr": csr.public_bytes(serialization.Encoding.PEM).decode()},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    assert "privateKey" not in response.json() or response.json()["privateKey"] is None
    cert = x509.load_pem_x509_certificate(response.json()["certificate"].encode())
    assert cert.public_key() == new_key.public_key()
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in list(eku)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1.nodes.example"]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert abs(lifetime - (old.not_valid_after_utc - old.not_valid_before_utc)).total_seconds() < 5
