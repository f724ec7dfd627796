"""What the client returns: frozen values parsed from the service's JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nodecert.core.errors import NodecertError

__all__ = ["CAIssuer", "CertificateInfo", "IssuedCertificate", "NodeInfo"]


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


class UnexpectedReplyError(NodecertError):
    """The service answered 2xx with something this client cannot read."""

    code = "unexpected_reply"
    title = "Unexpected reply"


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
