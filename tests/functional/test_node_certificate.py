"""A node's own certificate (admin): serverAuth + clientAuth, DNS names, the owner's identity."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from nodecert.core.identity import Identity

from ..conftest import Env, make_settings
from ..integration.test_mtls import pkilint


def _node_cert(env: Env, body: object, *, admin: bool = True, node: str = "n1"):  # type: ignore[no-untyped-def]
    headers = env.auth("root", admin=True) if admin else env.auth("alice")
    return env.client.post(f"/v1/nodes/{node}/certificate", json=body, headers=headers)


def test_an_admin_gets_a_server_certificate_naming_the_owner(env: Env, tmp_path: Path) -> None:
    env.add_node("n1", "alice")
    response = _node_cert(
        env,
        {"dnsNames": ["N1.Nodes.Example", "n1.nodes.example", "n1.internal"], "keyType": "ec-p256"},
    )
    assert response.status_code == 201, response.text
    cert = x509.load_pem_x509_certificate(response.json()["certificate"].encode())
    assert Identity.from_certificate(cert) == Identity("alice", "n1")
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1.nodes.example", "n1.internal"]
    assert pkilint("lint_pkix_cert", cert.public_bytes(serialization.Encoding.DER), tmp_path) == ""
    listed = env.client.get("/v1/certificates?nodeId=n1", headers=env.auth("alice")).json()
    assert [c["profile"] for c in listed["certificates"]] == ["node"]


def test_only_admins_and_only_known_nodes(env: Env) -> None:
    env.add_node("n1", "alice")
    assert _node_cert(env, {"dnsNames": ["n1.example"]}, admin=False).status_code == 403
    assert _node_cert(env, {"dnsNames": ["n1.example"]}, node="ghost").status_code == 404


@pytest.mark.parametrize(
    "names",
    [
        [],
        "n1.example",
        ["*.example"],
        ["10.0.0.1"],
        ["a..b"],
        ["-a.example"],
        ["x" * 64],
        [5],
        ["a"] * 21,
    ],
)
def test_bad_dns_names_are_400(env: Env, names: object) -> None:
    env.add_node("n1", "alice")
    response = _node_cert(env, {"dnsNames": names})
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("dnsNames")


def test_node_certificates_do_not_use_up_the_owners_allowance(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from nodecert.bootstrap import build_service
    from nodecert.http.app import create_app

    service = build_service(make_settings(tmp_path / "home", max_active_per_node=1))
    env = Env(service, TestClient(create_app(service)))
    env.add_node("n1", "alice")
    assert _node_cert(env, {"dnsNames": ["n1.example"], "keyType": "ec-p256"}).status_code == 201
    env.issue("alice", "n1", keyType="ec-p256")
    service.close()


def test_a_node_and_its_user_speak_mutual_tls_with_one_ca(env: Env, tmp_path: Path) -> None:
    env.add_node("n1", "alice")
    server = _node_cert(env, {"dnsNames": ["localhost"], "keyType": "ec-p256"}).json()
    client = env.issue("alice", "n1", keyType="ec-p256")
    ca = env.client.get("/v1/ca").text
    for name, text in {
        "server.crt": server["certificate"],
        "server.key": server["privateKey"],
        "client.crt": client["certificate"],
        "client.key": client["privateKey"],
        "ca.crt": ca,
    }.items():
        (tmp_path / name).write_text(str(text))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tmp_path / "ca.crt")
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    client_context = ssl.create_default_context(cafile=tmp_path / "ca.crt")
    client_context.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")
    seen: list[x509.Certificate] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        conn, _ = listener.accept()
        with server_context.wrap_socket(conn, server_side=True) as tls:
            seen.append(x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)))
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve)
    thread.start()
    with (
        socket.create_connection(listener.getsockname()[:2], timeout=10) as raw,
        client_context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.recv(2) == b"ok"
        assert Identity.from_certificate(
            x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        ) == Identity("alice", "n1")
    thread.join(10)
    listener.close()
    assert Identity.from_certificate(seen[0]) == Identity("alice", "n1")


def test_the_node_certificate_is_the_owners_client_certificate_for_that_node_only(
    env: Env,
) -> None:
    # docs/node-side.md: it passes the node-side decision as the owner, for its own node
    # only, and a transfer of the node revokes it with the rest.
    env.add_node("n1", "alice")
    pem = _node_cert(env, {"dnsNames": ["n1.nodes.example"]}).json()["certificate"]
    decider = env.service.decider
    assert decider.decide(pem, "n1").identity == Identity("alice", "n1")
    assert decider.decide(pem, "n2").reason == "wrong_node"
    env.add_node("n1", "bob")  # A transfer: every certificate of n1 is revoked.
    assert decider.decide(pem, "n1").reason == "revoked"
