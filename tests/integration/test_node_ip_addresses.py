"""Nodes reached by address: ``--ip`` puts an IP subjectAltName in the node certificate.

Proven on the wire: a TLS client that checks the server's name connects to 127.0.0.1 when
the node certificate names 127.0.0.1, and is refused when it names another address.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.cli import main
from nodecert.core.errors import InvalidIdentifierError
from nodecert.core.identity import validate_ip_addresses
from nodecert.issuing.service import Service
from tests.conftest import ADMIN, make_settings


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    from nodecert.bootstrap import build_service

    for key in list(os.environ):
        if key.startswith("NODECERT_"):
            monkeypatch.delenv(key)
    built = build_service(make_settings(tmp_path / "home"))
    monkeypatch.setenv("NODECERT_HOME", str(built.settings.home))
    monkeypatch.setenv("NODECERT_KEY_POOL_SIZE", "0")
    monkeypatch.chdir(tmp_path)
    built.administration.put_node(ADMIN, "n1", "operator")
    yield built
    built.close()


def _handshake(directory: Path, node: str) -> BaseException | None:
    """Serve one TLS connection on 127.0.0.1 with the node's files; connect checking the name."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(
        directory / f"{node}-server.crt", directory / f"{node}-server.key"
    )
    client_context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            connection, _ = listener.accept()
            connection.settimeout(10)
            with server_context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"x")
        return None
    except ssl.SSLError as exc:
        return exc
    finally:
        thread.join(timeout=10)
        listener.close()


def test_a_node_certificate_for_an_address_passes_a_name_checking_handshake(
    service, tmp_path, capsys
):
    out_dir = tmp_path / "good"
    out_dir.mkdir()
    code = main(
        ["nodes", "certificate", "n1", "--ip", "127.0.0.1", "--out", str(out_dir), "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["ipAddresses"] == ["127.0.0.1"]
    certificate = x509.load_pem_x509_certificate((out_dir / "n1-server.crt").read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert _handshake(out_dir, "n1") is None

    other_dir = tmp_path / "other"
    other_dir.mkdir()
    argv = ["nodes", "certificate", "n1", "--ip", "127.0.0.2", "--dns", "n1.example"]
    assert main([*argv, "--out", str(other_dir)]) == 0
    failure = _handshake(other_dir, "n1")
    assert isinstance(failure, ssl.SSLCertVerificationError)
    assert "127.0.0.1" in str(failure)


def test_a_renewed_node_certificate_keeps_its_addresses(service):
    issued = service.authority.issue_node_certificate(
        ADMIN,
        "n1",
        dns_names=None,
        ip_addresses=["10.0.0.7", "fd00::0:7"],
        request_id=uuid.uuid4().hex,
        key_type="ec-p256",
    )
    assert issued.record.ip_addresses == ("10.0.0.7", "fd00::7")
    successor = service.authority.issue_successor(issued.record.serial, request_id="r2")
    assert successor.record.ip_addresses == ("10.0.0.7", "fd00::7")
    certificate = x509.load_pem_x509_certificate(successor.certificate_pem.encode())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7", "fd00::7"]
    assert service.authority.ledger.get(successor.record.serial).ip_addresses == (
        "10.0.0.7",
        "fd00::7",
    )


def test_the_api_takes_addresses_and_refuses_bad_ones(service):
    from fastapi.testclient import TestClient

    from nodecert.http.app import create_app

    admin = {
        "Authorization": f"Bearer {service.dev_issuer.mint('root', admin_group='nodecert-admins')}"
    }
    with TestClient(create_app(service), raise_server_exceptions=False) as http:
        good = http.post(
            "/v1/nodes/n1/certificate", json={"ipAddresses": ["192.0.2.10"]}, headers=admin
        )
        assert good.status_code == 201, good.text
        row = http.get(f"/v1/certificates/{good.json()['serialNumber']}", headers=admin).json()
        assert (row["ipAddresses"], row["dnsNames"]) == (["192.0.2.10"], [])
        for body in (
            {},
            {"ipAddresses": []},
            {"ipAddresses": ["0.0.0.0"]},
            {"ipAddresses": ["fe80::1%eth0"]},
            {"ipAddresses": ["10.0.0.1/8"]},
            {"ipAddresses": "10.0.0.1"},
            {"ipAddresses": [7]},
            {"ipAddresses": ["224.0.0.1"]},
        ):
            response = http.post("/v1/nodes/n1/certificate", json=body, headers=admin)
            assert response.status_code == 400, (body, response.text)
            assert response.headers["content-type"] == "application/problem+json"


def test_the_cli_needs_a_name_or_an_address(service, capsys):
    assert main(["nodes", "certificate", "n1"]) == 2
    assert "--dns HOST or --ip ADDRESS" in capsys.readouterr().err


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None, database=None)
@given(st.one_of(json_values, st.lists(st.ip_addresses().map(str), min_size=1, max_size=3)))
def test_any_value_is_addresses_or_one_refusal(value):
    try:
        addresses = validate_ip_addresses(value)
    except InvalidIdentifierError:
        return
    assert addresses and all("%" not in a and "," not in a for a in addresses)
    assert validate_ip_addresses(list(addresses)) == addresses  # Normalized: a fixed point.
