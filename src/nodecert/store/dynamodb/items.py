"""DynamoDB items of nodecert: the mapping between items and records, the time format.

Shared by :mod:`nodecert.store.dynamodb.store` and :mod:`nodecert.store.dynamodb.outbox` (not a
public module). Times are ISO 8601 UTC strings of fixed width, so that string order is
time order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nodecert.core.values import (
    CertificateRecord,
    CertificateStatus,
    NodeRecord,
    Profile,
    RevocationReason,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = [
    "certificate_from_item",
    "certificate_item",
    "item_time",
    "node_from_item",
    "parse_time",
]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def item_time(value: datetime) -> str:
    """A time as nodecert items store it: fixed-width ISO 8601 UTC."""
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(value: str) -> datetime:
    """A time stored by :func:`item_time`, back as a UTC datetime."""
    return datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=UTC)


def _s(item: dict[str, Any], name: str) -> str:
    return str(item[name]["S"])


def _optional(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value["S"])


def node_from_item(item: dict[str, Any]) -> NodeRecord:
    """The node directory entry of a nodes-table item."""
    return NodeRecord(
        node_id=_s(item, "nodeId"),
        owner=_s(item, "userId"),
        created_at=parse_time(_s(item, "createdAt")),
    )


def certificate_item(record: CertificateRecord) -> dict[str, AttributeValueTypeDef]:
    """A ledger row as a certificates-table item (absent attributes for None)."""
    item: dict[str, AttributeValueTypeDef] = {
        "serial": {"S": record.serial},
        "userId": {"S": record.user_id},
        "nodeId": {"S": record.node_id},
        "keyType": {"S": record.key_type},
        "notBefore": {"S": item_time(record.not_before)},
        "notAfter": {"S": item_time(record.not_after)},
        "fingerprintSha256": {"S": record.fingerprint_sha256},
        "requestId": {"S": record.request_id},
        "createdAt": {"S": item_time(record.created_at)},
        "status": {"S": record.status.value},
        "profile": {"S": record.profile.value},
    }
    if record.revoked_at is not None:
        item["revokedAt"] = {"S": item_time(record.revoked_at)}
    if record.revocation_reason is not None:
        item["revocationReason"] = {"S": record.revocation_reason.value}
    if record.renewed_from is not None:
        item["renewedFrom"] = {"S": record.renewed_from}
    if record.issuer is not None:
        item["issuer"] = {"S": record.issuer}
    if record.dns_names:
        # DNS names never contain a comma (validate_dns_names).
        item["dnsNames"] = {"S": ",".join(record.dns_names)}
    if record.superseded_by is not None:
        item["supersededBy"] = {"S": record.superseded_by}
    if record.user_subject is not None:
        item["userSubject"] = {"S": record.user_subject}
    if record.ip_addresses:
        item["ipAddresses"] = {"S": ",".join(record.ip_addresses)}
    return item


def certificate_from_item(item: dict[str, Any]) -> CertificateRecord:
    """The ledger row of a certificates-table item."""
    revoked_at = _optional(item, "revokedAt")
    reason = _optional(item, "revocationReason")
    return CertificateRecord(
        serial=_s(item, "serial"),
        user_id=_s(item, "userId"),
        node_id=_s(item, "nodeId"),
        key_type=_s(item, "keyType"),
        not_before=parse_time(_s(item, "notBefore")),
        not_after=parse_time(_s(item, "notAfter")),
        fingerprint_sha256=_s(item, "fingerprintSha256"),
        request_id=_s(item, "requestId"),
        created_at=parse_time(_s(item, "createdAt")),
        status=CertificateStatus(_s(item, "status")),
        revoked_at=None if revoked_at is None else parse_time(revoked_at),
        revocation_reason=None if reason is None else RevocationReason(reason),
        profile=Profile(_optional(item, "profile") or Profile.CLIENT.value),
        renewed_from=_optional(item, "renewedFrom"),
        issuer=_optional(item, "issuer"),
        dns_names=tuple(names.split(",")) if (names := _optional(item, "dnsNames")) else (),
        superseded_by=_optional(item, "supersededBy"),
        user_subject=_optional(item, "userSubject"),
        ip_addresses=tuple(ips.split(",")) if (ips := _optional(item, "ipAddresses")) else (),
    )
