"""The general test kit: a local CA, issued certificates, the use cases over a store, events.

Used by every test directory (node side, authorizer, Lambda, CLI, security): a real
`LocalCA`, certificates signed by it and recorded in a store, an `Authority` and an
`Administration` over that store, the access decision, recorded API Gateway events, and
an ASGI app served by uvicorn on a loopback port.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from nodecert.backends.local.ca import LocalCA
from nodecert.core.identity import Identity, format_serial
from nodecert.core.keys import KeyType, PrivateKey, build_csr, fingerprint, generate_private_key
from nodecert.core.policy import OwnershipMode, OwnershipPolicy, ValidityPolicy
from nodecert.core.values import (
    CertificateRecord,
    Principal,
    SigningRequest,
)
from nodecert.issuing.administration import Administration
from nodecert.issuing.authority import Authority, IssueRequest
from nodecert.nodeside.access import AccessDecider
from tests.processes import free_port

EVENTS = Path(__file__).parent / "events"
TRUST_DOMAIN = "nodecert.local"
ADMIN = Principal("admin", is_admin=True)


@dataclass
class Issued:
    """A certificate with its key, as PEM and parsed."""

    certificate: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def serial(self) -> str:
        return format_serial(self.certificate.serial_number)


def new_ca(directory: Path | None = None, organization: str = "nodecert") -> LocalCA:
    """A local CA: in memory (unit tests), or with its files in ``directory``."""
    if directory is None:
        return LocalCA.generate(organization=organization, trust_domain=TRUST_DOMAIN)
    return LocalCA.open_or_create(directory, organization=organization, trust_domain=TRUST_DOMAIN)


def self_signed(
    key: PrivateKey,
    common_name: str = "a",
    *,
    serial: int = 1,
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    dns_names: tuple[str, ...] = (),
) -> x509.Certificate:
    """A self-signed certificate of ``key``, valid for a day from ``start``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=1))
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def sign(
    ca: LocalCA,
    user: str,
    node: str,
    *,
    not_before: datetime | None = None,
    lifetime: timedelta = timedelta(days=1),
    key_type: KeyType = KeyType.EC_P256,
) -> Issued:
    """A certificate straight from the CA (not recorded anywhere)."""
    key = generate_private_key(key_type)
    identity = Identity(user, node)
    start = not_before or datetime.now(UTC) - timedelta(minutes=1)
    signed = ca.issue(
        SigningRequest(
            csr=build_csr(key, identity, organization="nodecert", trust_domain=TRUST_DOMAIN),
            identity=identity,
            not_before=start,
            not_after=start + lifetime,
            request_id="test",
        )
    )
    return Issued(signed.certificate, key)


def record(store: Any, issued: Issued) -> None:
    """Record ``issued`` in ``store``'s ledger the way the authority does."""
    identity = Identity.from_certificate(issued.certificate)
    cert = issued.certificate
    store.record(
        CertificateRecord(
            serial=issued.serial,
            user_id=identity.user_id,
            node_id=identity.node_id,
            key_type="ec-p256",
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            fingerprint_sha256=fingerprint(cert),
            request_id="test",
            created_at=datetime.now(UTC),
        )
    ).wait()


def authority(ca: LocalCA, store: Any) -> Authority:
    return Authority(
        ca=ca,
        ledger=store,
        nodes=store,
        ownership=OwnershipPolicy(OwnershipMode.REGISTRY, store),
        validity=ValidityPolicy(),
        organization="nodecert",
        trust_domain=TRUST_DOMAIN,
    )


def admin_of(auth: Authority, *, outbox: Any = None) -> Administration:
    """The administration over ``auth``'s collaborators; ``outbox`` (also the audit trail)
    defaults to the ledger, as with every store but DynamoDB."""
    return Administration(
        ca=auth.ca,
        ledger=auth.ledger,
        nodes=auth.nodes,
        ownership=auth.ownership,
        clock=auth.clock,
        outbox=outbox or auth.ledger,
        audit=outbox or auth.ledger,
    )


def issue(auth: Authority, user: str, node: str, *, admin: Administration | None = None) -> Issued:
    """Issue through the authority (recorded), registering the node for ``user`` first
    (through ``admin``, by default the administration over the same store)."""
    if auth.nodes.owner_of(node) is None:
        (admin or admin_of(auth)).put_node(ADMIN, node, user)
    result = auth.issue(
        Principal(user), IssueRequest(node_id=node, request_id="r", key_type="ec-p256")
    )
    key = serialization.load_pem_private_key(result.private_key_pem.encode(), None)
    return Issued(x509.load_pem_x509_certificate(result.certificate_pem.encode()), key)


def decider(ca: LocalCA, store: Any, **kwargs: Any) -> AccessDecider:
    return AccessDecider.from_chain(
        ca.chain(), ledger=store, nodes=store, trust_domain=TRUST_DOMAIN, **kwargs
    )


RECORDED_CLIENT_ID = "4example0clientid"
"""The Cognito app client of the recorded events' tokens (their ``aud`` or ``client_id``)."""


def api_event(name: str, **changes: Any) -> dict[str, Any]:
    """A recorded API Gateway event from ``tests/events``, with ``changes`` at its top."""
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    data.update(changes)
    return data


def event(name: str, *, pem: str, node: str = "n1") -> dict[str, Any]:
    """A recorded API Gateway event from ``tests/events`` with our certificate in it."""
    text = (EVENTS / name).read_text().replace("NODE_ID", node)
    data = json.loads(text)
    context = data["requestContext"]
    holder = context["authentication"] if data.get("version") == "2.0" else context["identity"]
    holder["clientCert"]["clientCertPem"] = pem
    return data


class LiveServer:
    """An ASGI app served by uvicorn on a loopback port, in a thread."""

    def __init__(self, app: Any, **config_options: Any) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        options = {"host": "127.0.0.1", "log_level": "warning", "lifespan": "off"}
        config = uvicorn.Config(app, port=self.port, **{**options, **config_options})
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def node_server_certificate(ca: LocalCA, directory: Path) -> tuple[Path, Path]:
    """A serverAuth certificate for ``localhost`` from ``ca``, written as PEM files."""
    from nodecert.core.values import Profile

    key = generate_private_key(KeyType.EC_P256)
    identity = Identity("operator", "n1")
    now = datetime.now(UTC)
    signed = ca.issue(
        SigningRequest(
            csr=build_csr(key, identity, organization="nodecert", trust_domain=TRUST_DOMAIN),
            identity=identity,
            not_before=now - timedelta(minutes=1),
            not_after=now + timedelta(days=1),
            request_id="server",
            profile=Profile.NODE,
            dns_names=("localhost",),
        )
    )
    issued = Issued(signed.certificate, key)
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_text(issued.pem)
    key_path.write_bytes(issued.key_pem)
    return cert_path, key_path


def write_client(issued: Issued, directory: Path, name: str) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_text(issued.pem)
    key_path.write_bytes(issued.key_pem)
    return cert_path, key_path
