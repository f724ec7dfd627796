"""A simulated ACM PCA on loopback, slow on purpose, to time the acmpca backend's own path.

botocore's ``Stubber`` answers at once, so it cannot show what polling costs in real time.
:class:`SlowPCA` speaks the ACM PCA wire protocol (JSON 1.1: ``POST /`` with
``X-Amz-Target: ACMPrivateCA.<Operation>``) to a real boto3 client pointed at it with
``endpoint_url``: ``IssueCertificate`` signs at once with a :class:`LocalCA` but
``GetCertificate`` answers ``RequestInProgressException`` (HTTP 400, as AWS does) until
``delay`` seconds after the issue. The backend's overhead is then the issue time minus
``delay``: its polling granularity, the HTTP round trips, botocore's serialization and the
certificate parsing.
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["PCAOverhead", "SlowPCA", "measure_pca_overhead"]

CA_ARN = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/bench"
ORGANIZATION = "nodecert"
TRUST_DOMAIN = "nodecert.local"


@dataclass(frozen=True)
class PCAOverhead:
    """Issue time minus the simulated delay, in milliseconds, over ``issues`` issues."""

    delay_ms: float
    issues: int
    p50_ms: float
    p99_ms: float
    polls_per_issue: float


class SlowPCA:
    """The fake: a threaded HTTP server on 127.0.0.1 (``start``/``stop``, or ``with``).

    Args:
        directory: where the signing :class:`LocalCA` keeps its files.
        delay: seconds after ``IssueCertificate`` during which the certificate is not ready.
    """

    def __init__(self, directory: Path, *, delay: float) -> None:
        from nodecert.backends.local.ca import LocalCA

        self.ca = LocalCA.open_or_create(
            directory, organization=ORGANIZATION, trust_domain=TRUST_DOMAIN
        )
        self.delay = delay
        self.ready_at: dict[str, tuple[float, str]] = {}
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The URL for ``endpoint_url``."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> SlowPCA:
        """Serve in a background thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> SlowPCA:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One operation: (HTTP status, JSON body)."""
        with self.lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
        chain = self.ca.chain()[0].public_bytes(serialization.Encoding.PEM).decode()
        if operation == "DescribeCertificateAuthority":
            return 200, {
                "CertificateAuthority": {
                    "Arn": CA_ARN,
                    "Status": "ACTIVE",
                    "Type": "ROOT",
                    "CertificateAuthorityConfiguration": {
                        "KeyAlgorithm": "EC_prime256v1",
                        "SigningAlgorithm": "SHA256WITHECDSA",
                        "Subject": {"CommonName": "bench"},
                    },
                }
            }
        if operation == "GetCertificateAuthorityCertificate":
            return 200, {"Certificate": chain}
        if operation == "IssueCertificate":
            arn = f"{CA_ARN}/certificate/{len(self.ready_at) + 1:032x}"
            pem = self._sign(body)
            with self.lock:
                self.ready_at[arn] = (time.monotonic() + self.delay, pem)
            return 200, {"CertificateArn": arn}
        if operation == "GetCertificate":
            ready = self.ready_at.get(str(body.get("CertificateArn")))
            if ready is None:
                return 400, {"__type": "ResourceNotFoundException", "message": "no such cert"}
            if time.monotonic() < ready[0]:
                return 400, {
                    "__type": "RequestInProgressException",
                    "message": "The request is still in progress.",
                }
            return 200, {"Certificate": ready[1], "CertificateChain": chain}
        return 400, {"__type": "InvalidRequestException", "message": f"{operation}: not faked"}

    def _sign(self, body: dict[str, Any]) -> str:
        import base64

        from nodecert.core.identity import Identity
        from nodecert.core.values import SigningRequest

        csr = x509.load_pem_x509_csr(base64.b64decode(body["Csr"]))
        subject = body["ApiPassthrough"]["Subject"]
        signed = self.ca.issue(
            SigningRequest(
                csr=csr,
                identity=Identity(subject["CommonName"], subject["OrganizationalUnit"]),
                not_before=datetime.fromtimestamp(body["ValidityNotBefore"]["Value"], UTC),
                not_after=datetime.fromtimestamp(body["Validity"]["Value"], UTC),
                request_id="bench",
            )
        )
        return signed.certificate.public_bytes(serialization.Encoding.PEM).decode()


def _handler_for(pca: SlowPCA) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # Keep-alive, as botocore's pool expects.
        # Headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every call, which is the fake's cost, not ours.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            operation = str(self.headers.get("X-Amz-Target", "")).rpartition(".")[2]
            status, answer = pca.answer(operation, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", "bench")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: one line per request would be measured as cost."""

    return Handler


def _client(endpoint: str) -> Any:
    """A boto3 ``acm-pca`` client configured as ``nodecert.support.awsclients.make_client`` does."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    )
    config = Config(
        connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 1}
    )
    return session.client("acm-pca", endpoint_url=endpoint, config=config)


def _nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))]


def measure_pca_overhead(*, delay: float = 0.3, issues: int = 20) -> PCAOverhead:
    """Issue ``issues`` EC P-256 certificates through ``ACMPCABackend`` against a fake PCA.

    One unmeasured issue first (it describes the CA once and opens the connection).

    Raises:
        NodecertError: the backend failed.
    """
    from nodecert.backends.acmpca.backend import ACMPCABackend
    from nodecert.core.identity import Identity
    from nodecert.core.keys import KeyType, build_csr, generate_private_key
    from nodecert.core.values import SigningRequest

    identity = Identity("bench-user", "bench-node")
    requests = []
    for i in range(issues + 1):
        key = generate_private_key(KeyType.EC_P256)
        now = datetime.now(UTC).replace(microsecond=0)
        requests.append(
            SigningRequest(
                csr=build_csr(key, identity, organization=ORGANIZATION, trust_domain=TRUST_DOMAIN),
                identity=identity,
                not_before=now - timedelta(minutes=5),
                not_after=now + timedelta(days=1),
                request_id=f"bench-{i}",
            )
        )
    times = []
    # The backend logs every RequestInProgress poll as a warning; the lines would be noise.
    quiet = logging.getLogger("nodecert.backends.acmpca")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        with (
            tempfile.TemporaryDirectory(prefix="nodecert-pca-") as tmp,
            SlowPCA(Path(tmp), delay=delay) as pca,
        ):
            backend = ACMPCABackend(
                _client(pca.endpoint),
                ca_arn=CA_ARN,
                organization=ORGANIZATION,
                trust_domain=TRUST_DOMAIN,
            )
            for i, request in enumerate(requests):
                began = time.perf_counter()
                backend.issue(request)
                if i:
                    times.append((time.perf_counter() - began - delay) * 1000)
            polls = pca.calls.get("GetCertificate", 0) / len(requests)
    finally:
        quiet.setLevel(level)
    return PCAOverhead(
        delay_ms=delay * 1000,
        issues=issues,
        p50_ms=round(statistics.median(times), 1),
        p99_ms=round(_nearest_rank(times, 0.99), 1),
        polls_per_issue=round(polls, 1),
    )
