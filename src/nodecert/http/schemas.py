"""Pydantic models of the HTTP API, for ``/openapi.json`` only.

The rows of :data:`nodecert.http.api.ROUTES` name them (by name: the Lambda package has no
pydantic), and ``tests/functional/test_route_table.py`` checks that this module holds
exactly the models the rows name. Parsing is done by the route classes (so that the Lambda
front end answers identically); these models describe the same shapes to clients,
documentation and schemathesis. The choices
(key types, revocation reasons, statuses, profiles) are read off the core's enums, so a
new member shows up here without a second list to keep in step.
"""

from __future__ import annotations

import enum
from typing import Annotated, TypeAlias

from pydantic import BaseModel, Field, WithJsonSchema

from nodecert.core.keys import KeyType
from nodecert.core.values import CertificateStatus, Profile, RevocationReason

__all__ = [
    "AuditEntry",
    "AuditList",
    "Certificate",
    "CertificateList",
    "GenerateCertRequest",
    "IssuedCertificate",
    "Node",
    "NodeBody",
    "NodeCertificateRequest",
    "NodeChange",
    "NodeList",
    "NodeRemoval",
    "Problem",
    "RevokeRequest",
]

_ID = r"^[A-Za-z0-9._-]{1,64}$"


def _one_of(choices: type[enum.StrEnum]) -> WithJsonSchema:
    """Documents a string field as one of the values of ``choices``, inline."""
    return WithJsonSchema({"type": "string", "enum": [c.value for c in choices]})


KeyTypeName: TypeAlias = Annotated[str, _one_of(KeyType)]
ReasonName: TypeAlias = Annotated[str, _one_of(RevocationReason)]
StatusName: TypeAlias = Annotated[str, _one_of(CertificateStatus)]
ProfileName: TypeAlias = Annotated[str, _one_of(Profile)]


class GenerateCertRequest(BaseModel):
    """Body of ``POST /generate-cert``."""

    nodeId: str = Field(pattern=_ID)  # noqa: N815 - wire name
    userId: str | None = Field(default=None, pattern=_ID)  # noqa: N815
    keyType: KeyTypeName | None = None  # noqa: N815
    csr: str | None = Field(default=None, max_length=16384)
    validityDays: int | None = Field(default=None, ge=1)  # noqa: N815


class IssuedCertificate(BaseModel):
    """Body of a 201 from ``POST /generate-cert``."""

    certificate: str
    certificateChain: str  # noqa: N815
    privateKey: str | None = None  # noqa: N815
    serialNumber: str  # noqa: N815
    notBefore: str  # noqa: N815
    notAfter: str  # noqa: N815
    userId: str  # noqa: N815
    nodeId: str  # noqa: N815
    keyType: str  # noqa: N815


class Certificate(BaseModel):
    """A ledger row."""

    serialNumber: str  # noqa: N815
    userId: str  # noqa: N815
    nodeId: str  # noqa: N815
    keyType: str  # noqa: N815
    status: StatusName
    notBefore: str  # noqa: N815
    notAfter: str  # noqa: N815
    fingerprintSha256: str  # noqa: N815
    createdAt: str  # noqa: N815
    revokedAt: str | None  # noqa: N815
    revocationReason: str | None  # noqa: N815
    renewedFrom: str | None  # noqa: N815
    supersededBy: str | None  # noqa: N815
    profile: ProfileName
    dnsNames: list[str]  # noqa: N815
    ipAddresses: list[str]  # noqa: N815


class CertificateList(BaseModel):
    """Body of ``GET /v1/certificates``."""

    certificates: list[Certificate]
    nextCursor: str | None  # noqa: N815


class AuditEntry(BaseModel):
    """One entry of the audit trail."""

    at: str
    actor: str
    action: str
    target: str
    userId: str  # noqa: N815
    nodeId: str  # noqa: N815
    source: str
    detail: str


class AuditList(BaseModel):
    """Body of ``GET /v1/audit``."""

    entries: list[AuditEntry]
    count: int


class RevokeRequest(BaseModel):
    """Body of ``POST /v1/certificates/{serial}/revoke`` (optional)."""

    reason: ReasonName = RevocationReason.UNSPECIFIED.value


class NodeCertificateRequest(BaseModel):
    """Body of ``POST /v1/nodes/{nodeId}/certificate`` (admin): host names, IP addresses or
    both (at least one)."""

    dnsNames: list[str] | None = Field(default=None, max_length=20)  # noqa: N815
    ipAddresses: list[str] | None = Field(default=None, max_length=20)  # noqa: N815
    keyType: KeyTypeName | None = None  # noqa: N815
    csr: str | None = Field(default=None, max_length=16384)
    validityDays: int | None = Field(default=None, ge=1)  # noqa: N815


class NodeBody(BaseModel):
    """Body of ``PUT /v1/nodes/{nodeId}``."""

    owner: str = Field(pattern=_ID)


class Node(BaseModel):
    """A node directory entry."""

    nodeId: str  # noqa: N815
    owner: str
    createdAt: str  # noqa: N815


class NodeChange(Node):
    """Body of the reply to ``PUT /v1/nodes/{nodeId}``: the node, and what the PUT revoked."""

    previousOwner: str | None  # noqa: N815
    revoked: int
    revokedNodeCertificates: list[Certificate]  # noqa: N815


class NodeRemoval(BaseModel):
    """Body of the reply to ``DELETE /v1/nodes/{nodeId}``: what the removal revoked."""

    nodeId: str  # noqa: N815
    revoked: int
    revokedNodeCertificates: list[Certificate]  # noqa: N815


class NodeList(BaseModel):
    """Body of ``GET /v1/nodes``."""

    nodes: list[Node]


class Problem(BaseModel):
    """RFC 9457 problem document; the members beyond the standard ones are the wire-error
    table's (:data:`nodecert.core.problems.WIRE_ERRORS`, a test checks)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    serialNumber: str | None = None  # noqa: N815 - the wire's name (idempotent_replay).
    reason: str | None = None  # access_denied: why the client certificate was refused.
