"""ACM PCA behind a real loopback socket that fails: sent or not, outcome known or not.

A real botocore client talks HTTP to a server on 127.0.0.1 that answers
``DescribeCertificateAuthority`` and then, for ``IssueCertificate``, closes the connection
after reading the request (reset after sending), never answers (read timeout after
sending), or stops listening (the connection is never opened). Only the last proves that
PCA accepted nothing (``BackendUnavailableError.nothing_issued``), which is what lets an
``Idempotency-Key`` be released for a retry.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config

from nodecert.backends.acmpca.backend import ACMPCABackend, RetryPolicy
from nodecert.core.errors import BackendUnavailableError
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, build_csr, generate_private_key
from nodecert.core.values import SigningRequest
from tests.fakes import STUB_CA_ARN as CA_ARN
from tests.fakes import FakeTime

ALICE = Identity(user_id="alice", node_id="node-1")
_DESCRIBED = json.dumps(
    {
        "CertificateAuthority": {
            "Arn": CA_ARN,
            "Status": "ACTIVE",
            "CertificateAuthorityConfiguration": {
                "KeyAlgorithm": "EC_prime256v1",
                "SigningAlgorithm": "SHA256WITHECDSA",
                "Subject": {"CommonName": "test CA"},
            },
        }
    }
).encode()


class FaultyPCA:
    """A loopback HTTP/1.1 server: describes the CA, then fails ``IssueCertificate``."""

    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.issue_requests = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # Closed: no longer listening.
            threading.Thread(target=self._connection, args=(connection,), daemon=True).start()

    def _connection(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as stream:
            while True:
                target, ok = self._read_request(stream)
                if not ok:
                    return
                if target.endswith("DescribeCertificateAuthority"):
                    refuse = self.fault == "refused"
                    if refuse:
                        self._stop_listening()  # Before answering: nothing listens after.
                    head = (
                        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                        f"Content-Length: {len(_DESCRIBED)}\r\n"
                        + ("Connection: close\r\n" if refuse else "")
                        + "\r\n"
                    )
                    connection.sendall(head.encode() + _DESCRIBED)
                    if refuse:
                        return
                    continue
                self.issue_requests += 1
                if self.fault == "hang":
                    self.release.wait(timeout=30)  # Bounded: the client gave up long before.
                return  # "reset": the request was read in full, then the connection closes.

    @staticmethod
    def _read_request(stream: object) -> tuple[str, bool]:
        read = stream.readline  # type: ignore[attr-defined]
        if not read():
            return "", False
        target, length = "", 0
        while (line := read()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "x-amz-target":
                target = value.strip()
            if name.lower() == "content-length":
                length = int(value)
        stream.read(length)  # type: ignore[attr-defined]
        return target, True

    def _stop_listening(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone would not, and
        # that accept() would still take the next connection.
        with contextlib.suppress(OSError):  # Already shut down.
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def close(self) -> None:
        self.release.set()
        self._stop_listening()


@pytest.fixture
def make_server() -> Iterator[object]:
    servers: list[FaultyPCA] = []

    def make(fault: str) -> FaultyPCA:
        servers.append(FaultyPCA(fault))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def issue(server: FaultyPCA) -> BackendUnavailableError:
    client = boto3.client(
        "acm-pca",
        region_name="eu-west-1",
        endpoint_url=f"http://127.0.0.1:{server.port}",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(
            connect_timeout=2, read_timeout=0.5, retries={"mode": "standard", "max_attempts": 1}
        ),
    )
    clock = FakeTime()
    backend = ACMPCABackend(
        client,
        ca_arn=CA_ARN,
        organization="o",
        trust_domain="example.test",
        retry=RetryPolicy(max_attempts=2),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda: 0.5,
    )
    key = generate_private_key(KeyType.EC_P256)
    now = datetime.now(UTC)
    request = SigningRequest(
        csr=build_csr(key, ALICE, organization="o", trust_domain="example.test"),
        identity=ALICE,
        not_before=now,
        not_after=now + timedelta(days=7),
        request_id="idem-1",
    )
    with pytest.raises(BackendUnavailableError) as caught:
        backend.issue(request)
    return caught.value


@pytest.mark.parametrize("fault", ["reset", "hang"])
def test_a_request_sent_without_an_answer_may_have_been_issued(make_server, fault):
    server = make_server(fault)
    failure = issue(server)
    assert server.issue_requests >= 1  # It did reach "PCA".
    assert not failure.nothing_issued


def test_a_connection_never_opened_issued_nothing(make_server):
    server = make_server("refused")
    failure = issue(server)
    assert server.issue_requests == 0
    assert failure.nothing_issued
