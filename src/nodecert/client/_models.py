"""What the client returns: frozen values parsed from the service's JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from nodecert.core.errors import NodecertError

__all__ = ["CAIssuer", "CertificateInfo", "IssuedCertificate", "NodeChange", "NodeInfo"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate just issued (or renewed), with its chain and, if any, its new key.

    ``private_key`` is the PEM key the service generated (server keygen) or the client
    generated locally (renewal); None when the caller sent its own CSR. It is left out of
    ``repr`` so it cannot reach a log by accident.
    """

    certificate: str
    chain: str
    serial: str
    not_before: datetime
    not_after: datetime
    user_id: str
    node_id: str
    key_type: str
    renewed_from: str | None = None
    private_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """A ledger row as the API shows it (``GET /v1/certificates``)."""

    serial: str
    user_id: str
    node_id: str
    key_type: str
    status: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    created_at: datetime
    revoked_at: datetime | None = None
    revocation_reason: str | None = None
    renewed_from: str | None = None
    profile: str | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node directory entry."""

    node_id: str
    owner: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CAIssuer:
    """A CA certificate of the service (``GET /v1/ca/issuers``).

    ``status`` is ``active`` (issues now), ``retiring`` (renew its certificates early),
    ``retired`` (its certificates are refused: renew them now) or ``root``.
    """

    key_id: str
    subject: str
    not_after: datetime
    status: str


@dataclass(frozen=True, slots=True)
class NodeChange:
    """What a node's registration, transfer or removal did (``PUT``/``DELETE /v1/nodes/…``).

    Attributes:
        node_id: The node.
        owner: Its owner now (None once removed).
        previous_owner: Its owner before a PUT (None for a new node, and for a removal).
        revoked: How many certificates the call revoked.
        node_certificates: The node's own (server) certificates among them: the node
            serves with a revoked certificate until a new one is issued
            (``nodecert nodes certificate NODE --dns HOST``).
    """

    node_id: str
    owner: str | None
    previous_owner: str | None
    revoked: int
    node_certificates: tuple[CertificateInfo, ...] = ()

    @property
    def transferred(self) -> bool:
        """Whether a PUT gave the node to another owner."""
        return self.previous_owner is not None and self.previous_owner != self.owner


class UnexpectedReplyError(NodecertError):
    """The service answered 2xx with something this client cannot read."""

    code = "unexpected_reply"
    title = "Unexpected reply"


def list_of(data: Any, name: str, parse: Callable[[Any], T]) -> list[T]:
    """Parse the list a reply holds in its member ``name``, each item with ``parse``.

    Raises:
        UnexpectedReplyError: the reply is not an object, or ``name`` is not a list.
    """
    rows = data.get(name) if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise UnexpectedReplyError(f"reply: {name!r} missing or not a list")
    return [parse(row) for row in rows]


def issued_from(data: Any, *, private_key: str | None = None) -> IssuedCertificate:
    """Parse a 201 issue/renew reply."""
    obj = _object(data)
    return IssuedCertificate(
        certificate=_str(obj, "certificate"),
        chain=_str(obj, "certificateChain"),
        serial=_str(obj, "serialNumber"),
        not_before=_time(obj, "notBefore"),
        not_after=_time(obj, "notAfter"),
        user_id=_str(obj, "userId"),
        node_id=_str(obj, "nodeId"),
        key_type=_str(obj, "keyType"),
        renewed_from=_opt_str(obj, "renewedFrom"),
        private_key=private_key if private_key is not None else _opt_str(obj, "privateKey"),
    )


def certificate_from(data: Any) -> CertificateInfo:
    """Parse one certificate row."""
    obj = _object(data)
    return CertificateInfo(
        serial=_str(obj, "serialNumber"),
        user_id=_str(obj, "userId"),
        node_id=_str(obj, "nodeId"),
        key_type=_str(obj, "keyType"),
        status=_str(obj, "status"),
        not_before=_time(obj, "notBefore"),
        not_after=_time(obj, "notAfter"),
        fingerprint_sha256=_str(obj, "fingerprintSha256"),
        created_at=_time(obj, "createdAt"),
        revoked_at=_opt_time(obj, "revokedAt"),
        revocation_reason=_opt_str(obj, "revocationReason"),
        renewed_from=_opt_str(obj, "renewedFrom"),
        profile=_opt_str(obj, "profile"),
        dns_names=tuple(n for n in obj.get("dnsNames") or () if isinstance(n, str)),
        ip_addresses=tuple(a for a in obj.get("ipAddresses") or () if isinstance(a, str)),
    )


def node_from(data: Any) -> NodeInfo:
    """Parse one node entry."""
    obj = _object(data)
    return NodeInfo(
        node_id=_str(obj, "nodeId"), owner=_str(obj, "owner"), created_at=_time(obj, "createdAt")
    )


def issuer_from(data: Any) -> CAIssuer:
    """Parse one entry of ``GET /v1/ca/issuers``."""
    obj = _object(data)
    return CAIssuer(
        key_id=_str(obj, "keyId").lower(),
        subject=_str(obj, "subject"),
        not_after=_time(obj, "notAfter"),
        status=_str(obj, "status"),
    )


def node_change_from(data: Any, *, removed: bool = False) -> NodeChange:
    """Parse the reply to ``PUT`` (or, ``removed``, ``DELETE``) ``/v1/nodes/{nodeId}``."""
    obj = _object(data)
    revoked = obj.get("revoked")
    if not isinstance(revoked, int) or isinstance(revoked, bool) or revoked < 0:
        raise UnexpectedReplyError("reply: 'revoked' missing or not a count")
    rows = obj.get("revokedNodeCertificates", [])
    if not isinstance(rows, list):
        raise UnexpectedReplyError("reply: 'revokedNodeCertificates' is not a list")
    return NodeChange(
        node_id=_str(obj, "nodeId"),
        owner=None if removed else _str(obj, "owner"),
        previous_owner=None if removed else _opt_str(obj, "previousOwner"),
        revoked=revoked,
        node_certificates=tuple(certificate_from(row) for row in rows),
    )


def audit_from(data: Any) -> dict[str, str]:
    """Parse one audit entry: an object of strings, kept as the wire has it."""
    obj = _object(data)
    if not all(isinstance(value, str) for value in obj.values()):
        raise UnexpectedReplyError("reply: an audit entry holds a value that is not a string")
    return obj


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise UnexpectedReplyError(f"reply: expected a JSON object, got {type(data).__name__}")
    return data


def _str(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise UnexpectedReplyError(f"reply: {name!r} missing or not a string")
    return value


def _opt_str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    return value if isinstance(value, str) else None


def _time(obj: dict[str, Any], name: str) -> datetime:
    value = _str(obj, name)
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UnexpectedReplyError(f"reply: {name!r} is not an ISO 8601 time") from None


def _opt_time(obj: dict[str, Any], name: str) -> datetime | None:
    return None if obj.get(name) is None else _time(obj, name)
