"""Shared helpers for the node-side tests: a CA, issued certificates, an in-memory store."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.backends.local import LocalCA
from nodecert.core.errors import ConflictError, NotFoundError, StoreUnavailableError
from nodecert.core.identity import Identity, format_serial
from nodecert.core.keys import KeyType, PrivateKey, build_csr, fingerprint, generate_private_key
from nodecert.core.policy import OwnershipMode, OwnershipPolicy, ValidityPolicy
from nodecert.core.values import (
    AuditEntry,
    CertificateRecord,
    CertificateStatus,
    NodeRecord,
    PendingRevocation,
    Principal,
    RevocationReason,
    SigningRequest,
)
from nodecert.issuing.authority import Authority, IssueRequest
from nodecert.nodeside.access import AccessDecider
from tests.processes import free_port

EVENTS = Path(__file__).parent / "events"
TRUST_DOMAIN = "nodecert.local"
ADMIN = Principal("admin", is_admin=True)


class MemoryStore:
    """Ledger (with its outbox and audit trail) + NodeDirectory + ReplayGuard in memory;
    ``down`` makes every call fail."""

    def __init__(self) -> None:
        self.rows: dict[str, CertificateRecord] = {}
        self.owners: dict[str, NodeRecord] = {}
        self.used: dict[str, datetime] = {}
        self.queue: dict[str, PendingRevocation] = {}
        self.audit: list[AuditEntry] = []
        self.down = False
        self.calls = 0

    def _touch(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailableError("store: down (test)")

    def owner_of(self, node_id: str) -> str | None:
        self._touch()
        record = self.owners.get(node_id)
        return None if record is None else record.owner

    def put_node(self, node_id: str, owner: str, *, at: datetime) -> NodeRecord:
        self._touch()
        record = NodeRecord(node_id, owner, at)
        self.owners[node_id] = record
        return record

    def delete_node(self, node_id: str) -> bool:
        self._touch()
        return self.owners.pop(node_id, None) is not None

    def list_nodes(self, *, owner: str | None = None) -> list[NodeRecord]:
        self._touch()
        return [r for r in self.owners.values() if owner is None or r.owner == owner]

    def record(self, record: CertificateRecord) -> None:
        self._touch()
        if record.serial in self.rows:
            raise ConflictError("exists")
        self.rows[record.serial] = record

    def get(self, serial: str) -> CertificateRecord | None:
        self._touch()
        return self.rows.get(serial)

    def find(
        self, *, user_id: str | None = None, node_id: str | None = None
    ) -> list[CertificateRecord]:
        self._touch()
        return [
            r
            for r in sorted(self.rows.values(), key=lambda r: r.created_at, reverse=True)
            if (user_id is None or r.user_id == user_id)
            and (node_id is None or r.node_id == node_id)
        ]

    def mark_revoked(
        self, serial: str, *, reason: RevocationReason, at: datetime
    ) -> CertificateRecord:
        self._touch()
        row = self.rows.get(serial)
        if row is None:
            raise NotFoundError(serial)
        if row.status is not CertificateStatus.REVOKED:
            row = replace(
                row, status=CertificateStatus.REVOKED, revoked_at=at, revocation_reason=reason
            )
            self.rows[serial] = row
        return row

    def record_successor(self, record: CertificateRecord) -> None:
        self._touch()
        predecessor = self.rows.get(record.renewed_from or "")
        if predecessor is None or predecessor.status is not CertificateStatus.ACTIVE:
            raise ConflictError("renewal: predecessor not active")
        if record.serial in self.rows:
            raise ConflictError("exists")
        self.rows[predecessor.serial] = replace(
            predecessor, status=CertificateStatus.SUPERSEDED, superseded_by=record.serial
        )
        self.rows[record.serial] = record

    def revoke_and_queue(
        self, serials: Any, *, reason: RevocationReason, at: datetime
    ) -> list[CertificateRecord]:
        self._touch()
        revoked = []
        for serial in serials:
            row = self.rows.get(serial)
            if row is None or not row.status.is_live:
                continue
            row = replace(
                row, status=CertificateStatus.REVOKED, revoked_at=at, revocation_reason=reason
            )
            self.rows[serial] = row
            self.queue.setdefault(serial, PendingRevocation(serial, reason, row.issuer, at))
            revoked.append(row)
        return revoked

    def pending_revocations(self, *, limit: int) -> list[PendingRevocation]:
        self._touch()
        return list(self.queue.values())[:limit]

    def revocation_sent(self, serial: str) -> None:
        self._touch()
        self.queue.pop(serial, None)

    def count_pending_revocations(self) -> int:
        self._touch()
        return len(self.queue)

    def append_audit(self, entry: AuditEntry) -> None:
        self._touch()
        self.audit.append(entry)

    def audit_entries(self, *, limit: int = 100) -> list[AuditEntry]:
        self._touch()
        return self.audit[::-1][:limit]

    def use_once(self, key: str, *, expires_at: datetime) -> None:
        self._touch()
        if key in self.used:
            raise ConflictError("token: already used")
        self.used[key] = expires_at


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
    )


def authority(ca: LocalCA, store: Any, *, outbox: Any = None) -> Authority:
    return Authority(
        outbox=outbox,
        audit=outbox,
        ca=ca,
        ledger=store,
        nodes=store,
        ownership=OwnershipPolicy(OwnershipMode.REGISTRY, store),
        validity=ValidityPolicy(),
        organization="nodecert",
        trust_domain=TRUST_DOMAIN,
    )


def issue(auth: Authority, user: str, node: str) -> Issued:
    """Issue through the authority (recorded), registering the node for ``user`` first."""
    if auth.nodes.owner_of(node) is None:
        auth.put_node(ADMIN, node, user)
    result = auth.issue(
        Principal(user), IssueRequest(node_id=node, request_id="r", key_type="ec-p256")
    )
    key = serialization.load_pem_private_key(result.private_key_pem.encode(), None)
    return Issued(x509.load_pem_x509_certificate(result.certificate_pem.encode()), key)


def decider(ca: LocalCA, store: Any, **kwargs: Any) -> AccessDecider:
    return AccessDecider.from_chain(
        ca.chain(), ledger=store, nodes=store, trust_domain=TRUST_DOMAIN, **kwargs
    )


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
