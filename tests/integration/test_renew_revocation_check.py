"""``nodecert renew`` notices, at most once a day, that its certificate was revoked.

The story of the report: a transfer revokes the node's own server certificate; ``renew``
said "not due" for days and failed with 403 once due, while nginx kept serving the revoked
certificate. Now the first run after the revocation says so and exits 1.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from nodecert.backends.local.ca import LocalCA
from nodecert.cli import main
from nodecert.client import Client, Request, Response
from nodecert.client.renewal._revocation import check_revocation
from nodecert.client.renewal._target import RenewalTarget
from nodecert.core.values import RevocationReason
from nodecert.http.app import create_app
from nodecert.testing import MockTransport
from nodecert.testing.client import UnreachableTransport
from tests.conftest import ADMIN
from tests.kit import LiveServer


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("NODECERT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def _node_server_files(service, directory: Path) -> tuple[Path, Path]:
    service.administration.put_node(ADMIN, "n1", "alice")
    issued = service.authority.issue_node_certificate(
        ADMIN, "n1", dns_names=["n1.example"], request_id=uuid.uuid4().hex, key_type="ec-p256"
    )
    cert, key = directory / "n1-server.crt", directory / "n1-server.key"
    cert.write_text(issued.certificate_pem)
    key.write_text(issued.private_key_pem)
    key.chmod(0o600)
    return cert, key


def test_a_transfer_is_noticed_by_the_next_renew_run(service, tmp_path, capsys):
    cert, key = _node_server_files(service, tmp_path)
    stamp = tmp_path / ".n1-server.crt.revocation-check"
    with LiveServer(create_app(service)) as live:
        argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", live.url]
        assert main(argv) == 0  # Not due, not revoked: checked, and not again today.
        assert "not due" in capsys.readouterr().out
        next_check = datetime.fromisoformat(stamp.read_text())
        assert timedelta(hours=23) < next_check - datetime.now(UTC) <= timedelta(days=1)

        service.administration.put_node(ADMIN, "n1", "bob")  # A transfer revokes it.
        assert main(argv) == 0  # Checked less than a day ago: no call.
        capsys.readouterr()

        stamp.unlink()  # A day later.
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1
        assert "was revoked at the service" in err and "affiliationChanged" in err
        assert "nodecert nodes certificate" in err


def test_a_service_that_cannot_answer_is_asked_again_an_hour_later(service, tmp_path):
    cert, key = _node_server_files(service, tmp_path)
    target = RenewalTarget(
        cert=cert, key=key, client=Client("http://127.0.0.1:9", transport=UnreachableTransport())
    )
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    now = datetime.now(UTC)
    assert check_revocation(target, certificate, now=now) is None
    next_check = datetime.fromisoformat((tmp_path / ".n1-server.crt.revocation-check").read_text())
    assert next_check == now + timedelta(hours=1)


def test_a_crl_from_another_ca_is_not_believed(service, tmp_path):
    cert, key = _node_server_files(service, tmp_path)
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    # A CRL that names our CA as issuer and lists our serial, signed by someone else.
    ca_certificate = service.authority.ca.chain()[0]
    forger = LocalCA.generate(organization="nodecert", trust_domain="nodecert.local")
    now = datetime.now(UTC)
    entry = (
        x509.RevokedCertificateBuilder()
        .serial_number(certificate.serial_number)
        .revocation_date(now)
        .build()
    )
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_certificate.subject)
        .last_update(now)
        .next_update(now + timedelta(hours=1))
        .add_revoked_certificate(entry)
        .sign(forger._state.signer.key, hashes.SHA256())
    )
    chain_pem = ca_certificate.public_bytes(serialization.Encoding.PEM)

    def answer(request: Request) -> Response:
        if "/v1/crl" in request.url:  # With or without ?issuer=.
            return Response(
                200,
                {"content-type": "application/pkix-crl"},
                forged.public_bytes(serialization.Encoding.DER),
            )
        return Response(200, {"content-type": "application/x-pem-file"}, chain_pem)

    client = Client("http://127.0.0.1:9", transport=MockTransport(answer))
    target = RenewalTarget(cert=cert, key=key, client=client)
    assert check_revocation(target, certificate, now=now) is None

    # The same CRL signed by our CA is believed.
    genuine = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_certificate.subject)
        .last_update(now)
        .next_update(now + timedelta(hours=1))
        .add_revoked_certificate(entry)
        .sign(service.authority.ca._state.signer.key, hashes.SHA256())
    )
    forged = genuine
    (tmp_path / ".n1-server.crt.revocation-check").unlink()
    revoked = check_revocation(target, certificate, now=now)
    assert revoked is not None and revoked.reason is None


def test_the_revocation_reason_travels(service, tmp_path, capsys):
    cert, key = _node_server_files(service, tmp_path)
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    service.administration.revoke(
        ADMIN, format(certificate.serial_number, "x"), RevocationReason.KEY_COMPROMISE
    )
    with LiveServer(create_app(service)) as live:
        argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", live.url]
        assert main(argv) == 1
    assert "(keyCompromise)" in capsys.readouterr().err
