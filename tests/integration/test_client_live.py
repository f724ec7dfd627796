"""``nodecert.client.Client`` against a real ``nodecert serve`` process, and its failures."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.client import (
    Client,
    ServiceUnreachableError,
    http_status_of,
)
from nodecert.core.decision import AccessDeniedError, DenyReason
from nodecert.core.errors import (
    AuthenticationError,
    AuthorizationError,
    CSRError,
    IdempotentReplayError,
    InvalidIdentifierError,
    InvalidRequestError,
    NotFoundError,
)
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, build_csr, generate_private_key
from nodecert.verifiers.devissuer import DevIssuer
from tests.processes import free_port, nodecert_env, start_server, stop_server


class Live:
    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        issuer = DevIssuer.open_or_create(home)
        self.admin = Client(url, token=issuer.mint("root", admin_group="nodecert-admins"))
        self.mint = issuer.mint

    def user(self, name: str) -> Client:
        return Client(self.url, token=self.mint(name), timeout=20)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("client") / "home"
    port = free_port()
    env = nodecert_env(home, port, quota_per_minute="0", max_active_per_node="0")
    process = start_server(env, home.parent / "serve.log")
    try:
        yield Live(f"http://127.0.0.1:{port}", home)
    finally:
        stop_server(process)


def test_issue_with_a_server_key_and_with_a_csr(live: Live) -> None:
    live.admin.put_node("c-n1", owner="ann")
    ann = live.user("ann")
    issued = ann.issue("c-n1", key_type="ec-p256")
    assert issued.private_key is not None and "PRIVATE KEY" in issued.private_key
    assert "PRIVATE KEY" not in repr(issued)
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())
    assert Identity.from_certificate(cert) == Identity("ann", "c-n1")
    assert issued.serial == format(cert.serial_number, "x")
    key = serialization.load_pem_private_key(issued.private_key.encode(), None)
    assert key.public_key() == cert.public_key()

    mine = generate_private_key(KeyType.EC_P256)
    csr = build_csr(mine, Identity("ann", "c-n1"), organization="x", trust_domain="y")
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    from_csr = ann.issue("c-n1", csr=pem, idempotency_key="csr-1", validity_days=2)
    assert from_csr.private_key is None
    assert (from_csr.not_after - from_csr.not_before).days in (1, 2)
    assert from_csr.key_type == "ec-p256"
    with pytest.raises(IdempotentReplayError) as replayed:  # Rebuilt with its serialNumber.
        ann.issue("c-n1", csr=pem, idempotency_key="csr-1", validity_days=2)
    assert replayed.value.serial_number == from_csr.serial
    assert http_status_of(replayed.value) == 409
    with pytest.raises(CSRError) as bad:
        ann.issue("c-n1", csr="-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")
    assert http_status_of(bad.value) == 400 and bad.value.code == "invalid_csr"


def test_list_get_revoke_and_revoke_all(live: Live) -> None:
    live.admin.put_node("c-n2", owner="bob")
    live.admin.put_node("c-n3", owner="bob")
    bob = live.user("bob")
    first, second = bob.issue("c-n2", key_type="ec-p256"), bob.issue("c-n2", key_type="ec-p256")
    third = bob.issue("c-n3", key_type="ec-p256")
    listed = [row.serial for row in bob.certificates(node_id="c-n2")]
    assert listed == [second.serial, first.serial]
    row = bob.certificate(first.serial)
    assert (row.node_id, row.status, row.user_id) == ("c-n2", "active", "bob")
    revoked = bob.revoke(first.serial, reason="keyCompromise")
    assert (revoked.status, revoked.revocation_reason) == ("revoked", "keyCompromise")
    assert [r.serial for r in bob.certificates(status="revoked")] == [first.serial]
    swept = bob.revoke_all(node_id="c-n2", reason="superseded")
    assert [r.serial for r in swept] == [second.serial]
    swept = bob.revoke_all(user_id="bob")
    assert [r.serial for r in swept] == [third.serial]
    assert {r.status for r in bob.certificates()} == {"revoked"}
    crl = Client(live.url).crl()
    revoked_serials = {entry.serial_number for entry in crl}
    assert int(first.serial, 16) in revoked_serials and int(third.serial, 16) in revoked_serials
    with pytest.raises(InvalidRequestError):
        bob.revoke_all()


def test_renew_proves_possession_and_keeps_the_identity(live: Live) -> None:
    live.admin.put_node("c-n4", owner="cid")
    issued = live.user("cid").issue("c-n4", key_type="ec-p256")
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())
    assert issued.private_key is not None
    key = serialization.load_pem_private_key(issued.private_key.encode(), None)
    renewed = Client(live.url).renew(cert, key)  # type: ignore[arg-type]
    assert renewed.renewed_from == issued.serial
    assert renewed.private_key is not None and renewed.private_key != issued.private_key
    new = x509.load_pem_x509_certificate(renewed.certificate.encode())
    assert Identity.from_certificate(new) == Identity("cid", "c-n4")
    other = generate_private_key(KeyType.EC_P256)
    with pytest.raises(InvalidRequestError, match="does not belong"):
        Client(live.url).renew(cert, other)
    live.user("cid").revoke(renewed.serial)
    new_key = serialization.load_pem_private_key(renewed.private_key.encode(), None)
    with pytest.raises(AccessDeniedError, match="revoked") as denied:
        Client(live.url).renew(new, new_key)  # type: ignore[arg-type]
    assert http_status_of(denied.value) == 403
    assert denied.value.decision.reason is DenyReason.REVOKED  # As the service decided it.


def test_nodes_and_the_node_certificate(live: Live) -> None:
    admin = live.admin
    node = admin.put_node("c-n5", owner="dee")
    assert (node.node_id, node.owner) == ("c-n5", "dee")
    assert admin.node("c-n5").owner == "dee"
    assert "c-n5" in {n.node_id for n in admin.nodes()}
    assert [n.node_id for n in live.user("dee").nodes()] == ["c-n5"]
    issued = admin.issue_node_certificate("c-n5", dns_names=["n5.example"], key_type="ec-p256")
    cert = x509.load_pem_x509_certificate(issued.certificate.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n5.example"]
    chain = Client(live.url).ca_chain()
    cert.verify_directly_issued_by(x509.load_pem_x509_certificates(chain.encode())[0])
    admin.delete_node("c-n5")
    with pytest.raises(NotFoundError) as missing:
        admin.node("c-n5")
    assert http_status_of(missing.value) == 404 and "c-n5" in missing.value.detail


def test_refusals_are_the_projects_own_errors(live: Live) -> None:
    live.admin.put_node("c-n6", owner="eve")
    with pytest.raises(AuthorizationError) as forbidden:
        live.user("mallory").issue("c-n6")
    assert forbidden.value.code == "forbidden"
    with pytest.raises(AuthorizationError):
        live.user("eve").put_node("c-n7", owner="eve")
    with pytest.raises(AuthenticationError) as bad_token:
        Client(live.url, token="not-a-jwt").nodes()
    assert http_status_of(bad_token.value) == 401
    with pytest.raises(AuthenticationError, match="a token is required"):
        Client(live.url).nodes()
    with pytest.raises(InvalidIdentifierError):
        live.user("eve").certificate("zz")
    with pytest.raises(NotFoundError):
        live.user("eve").certificate("abcdef")
    # A hostile id cannot leave its path segment and reach another route.
    with pytest.raises(NotFoundError):
        live.admin.node("../certificates")


def test_a_server_that_is_down_is_one_clear_error() -> None:
    port = free_port()
    with pytest.raises(ServiceUnreachableError, match=rf"cannot reach http://127.0.0.1:{port}"):
        Client(f"http://127.0.0.1:{port}", timeout=5).ca_chain()


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # Accepts (the kernel does), never answers.
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(ServiceUnreachableError, match=r"no answer within 0\.5 s|timed out"):
            Client(url, timeout=0.5).ca_chain()


def test_tls_failures_are_one_clear_error(tmp_path: Path) -> None:
    ca, foreign = trustme.CA(), trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def serve_handshakes() -> None:
            for _ in range(2):
                conn, _ = listener.accept()
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(65536)
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nPEM")
                except (ssl.SSLError, OSError):
                    pass

        thread = threading.Thread(target=serve_handshakes, daemon=True)
        thread.start()
        bundle = tmp_path / "foreign.pem"
        foreign.cert_pem.write_to_path(str(bundle))
        with pytest.raises(ServiceUnreachableError, match="TLS") as failed:
            Client(f"https://127.0.0.1:{port}", cafile=bundle, timeout=5).ca_chain()
        assert isinstance(failed.value.__cause__, type(None))
        # With the right CA, the same server's handshake succeeds and its answer is read.
        right = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(right))
        assert Client(f"https://127.0.0.1:{port}", cafile=right, timeout=5).ca_chain() == "PEM"
        thread.join(timeout=10)


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ServiceUnreachableError, match=r"nope\.pem"):
        Client("https://127.0.0.1:1", cafile=tmp_path / "nope.pem")


def test_bad_configuration_is_refused() -> None:
    for url in ("ftp://x", "127.0.0.1:8080", "http://", "http://x/?q=1"):
        with pytest.raises(InvalidRequestError):
            Client(url)
    with pytest.raises(InvalidRequestError):
        Client("http://x", timeout=0)


def _readme_blocks() -> list[str]:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## The Python client") :]
    section = section[: section.index("\n## ", 1)]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


def test_the_readme_examples_run_as_written(live: Live) -> None:
    example, fake = _readme_blocks()
    live.admin.put_node("n1", owner="readme")
    namespace = {"token": live.mint("readme")}
    exec(example.replace("https://nodecert.example.com", live.url), namespace)
    assert {r.status for r in live.user("readme").certificates(node_id="n1")} == {"revoked"}
    namespace = {}
    exec("from nodecert.client import Client\n" + fake, namespace)
    with pytest.raises(NotFoundError, match="no node 'n9'"):
        namespace["client"].node("n9")
    assert namespace["transport"].requests[0].url.endswith("/v1/nodes/n9")


def test_a_reply_larger_than_the_limit_is_not_read(live: Live) -> None:
    from nodecert.client import UnexpectedReplyError, UrllibTransport

    client = Client(live.url, transport=UrllibTransport(max_reply_bytes=10))
    with pytest.raises(UnexpectedReplyError, match="larger than 10 bytes"):
        client.ca_chain()
    assert Client(live.url, transport=UrllibTransport()).ca_chain().startswith("-----BEGIN")
