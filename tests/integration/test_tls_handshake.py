"""Real mutual-TLS handshakes with Python ``ssl``: the node checks with ``verify_client``.

The TLS layer refuses what X.509 alone can refuse (a foreign CA, an expired certificate);
``nodecert.verify`` refuses the rest (wrong node, revoked, node transferred).
"""

import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from nodecert.core.values import RevocationReason
from nodecert.nodeside.access import AccessDeniedError
from nodecert.store.sqlite.store import SQLiteStore
from nodecert.verify import verify_client
from tests.kit import (
    ADMIN,
    admin_of,
    authority,
    decider,
    issue,
    new_ca,
    node_server_certificate,
    record,
    sign,
    write_client,
)


class NodeServer:
    """A one-thread TLS server for node n1 answering 'allowed <user>' or 'denied <reason>'."""

    def __init__(self, tmp_path, ca, decide):
        cert, key = node_server_certificate(ca, tmp_path)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.context.load_verify_locations(cadata=_chain_pem(ca))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.decide = decide
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.errors = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            with raw:
                try:
                    with self.context.wrap_socket(raw, server_side=True) as tls:
                        der = tls.getpeercert(binary_form=True)
                        try:
                            user = verify_client(der, node_id="n1", decider=self.decide).user_id
                            tls.sendall(f"allowed {user}".encode())
                        except AccessDeniedError as exc:
                            tls.sendall(f"denied {exc.decision.reason.value}".encode())
                except (ssl.SSLError, OSError) as exc:
                    self.errors.append(exc)

    def close(self):
        # shutdown() wakes the accept() blocked in the server thread; close() alone does not.
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=5)


def _chain_pem(ca):
    # The issuing CA and the root (a new local CA has two tiers).
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in ca.chain())


@pytest.fixture
def ca(tmp_path):
    return new_ca(tmp_path / "ca")


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(tmp_path / "nodecert.db")
    yield store
    store.close()


@pytest.fixture
def auth(ca, store):
    return authority(ca, store)


@pytest.fixture
def server(tmp_path, ca, store):
    server = NodeServer(tmp_path, ca, decider(ca, store))
    yield server
    server.close()


def talk(server, tmp_path, ca, client):
    context = ssl.create_default_context(cafile=None)
    context.load_verify_locations(cadata=_chain_pem(ca))
    context.load_cert_chain(*client)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.recv(1024).decode()


def test_the_right_node_is_allowed(server, tmp_path, ca, auth):
    client = write_client(issue(auth, "alice", "n1"), tmp_path, "alice")
    assert talk(server, tmp_path, ca, client) == "allowed alice"


def test_the_wrong_node_is_denied_after_the_handshake(server, tmp_path, ca, auth):
    client = write_client(issue(auth, "alice", "n2"), tmp_path, "alice")
    assert talk(server, tmp_path, ca, client) == "denied wrong_node"


def test_revoked_and_transferred_are_denied(server, tmp_path, ca, auth):
    revoked = issue(auth, "alice", "n1")
    kept = issue(auth, "alice", "n1")
    admin_of(auth).revoke(ADMIN, revoked.serial, RevocationReason.KEY_COMPROMISE)
    assert talk(server, tmp_path, ca, write_client(revoked, tmp_path, "r")) == "denied revoked"
    assert talk(server, tmp_path, ca, write_client(kept, tmp_path, "k")) == "allowed alice"
    auth.nodes.put_node("n1", "bob", at=datetime.now(UTC))  # Directory change, no sweep.
    assert talk(server, tmp_path, ca, write_client(kept, tmp_path, "k")) == (
        "denied node_not_owned"
    )


def test_a_foreign_ca_fails_the_handshake(server, tmp_path, ca, auth, store):
    issue(auth, "alice", "n1")
    forged = sign(new_ca(tmp_path / "foreign"), "alice", "n1")
    record(store, forged)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        talk(server, tmp_path, ca, write_client(forged, tmp_path, "evil"))


def test_an_expired_certificate_fails_the_handshake(server, tmp_path, ca, auth, store):
    issue(auth, "alice", "n1")
    old = sign(
        ca,
        "alice",
        "n1",
        not_before=datetime.now(UTC) - timedelta(days=3),
        lifetime=timedelta(days=1),
    )
    record(store, old)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        talk(server, tmp_path, ca, write_client(old, tmp_path, "old"))
