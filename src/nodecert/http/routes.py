"""Users' and admins' routes without a web framework: parse raw input, call the use case.

Every front end (the FastAPI app, its direct route, the Lambda handler) reaches these
methods through the rows of :data:`nodecert.http.api.ROUTES`, with raw input (header
values, body bytes, path and query parameters), so bad input gets the very same problem
document whichever way it came in. What a reply looks like is :mod:`nodecert.http.contract`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from nodecert.core.errors import InvalidRequestError
from nodecert.core.identity import validate_id
from nodecert.core.ports import TokenVerifier
from nodecert.core.values import (
    AuditEntry,
    AuditQuery,
    CertificateRecord,
    CertificateStatus,
    Commit,
    Principal,
    RevocationReason,
)
from nodecert.http.call import bearer_token
from nodecert.http.contract import (
    Reply,
    certificate_json,
    issued_reply,
    node_json,
    parse_object,
    reason_of,
)
from nodecert.issuing.administration import Administration
from nodecert.issuing.audit import AuditReader
from nodecert.issuing.authority import Authority, IssuedCertificate, IssueRequest
from nodecert.issuing.service import Service
from nodecert.support.logs import current_request_id

__all__ = ["Issuance", "Routes", "log_issued"]

log = logging.getLogger("nodecert")

_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ISSUE_FIELDS = frozenset({"nodeId", "userId", "keyType", "csr", "validityDays"})
_NODE_CERT_FIELDS = frozenset({"dnsNames", "ipAddresses", "keyType", "csr", "validityDays"})
_DEFAULT_PAGE, _MAX_PAGE = 100, 1000
_PAGE_SIZE = re.compile(r"[0-9]{1,4}")


@dataclass(frozen=True, slots=True)
class Issuance:
    """A ``POST /generate-cert`` read and authenticated, its certificate not yet signed.

    The front end decides where :meth:`start` runs (on the event loop when it never
    waits, see :attr:`makes_rsa_key`), waits for the ledger commit it returns, and only
    then answers and logs: a certificate whose row was dropped never leaves.
    """

    authority: Authority
    principal: Principal
    request: IssueRequest

    @property
    def makes_rsa_key(self) -> bool:
        """Whether the service makes an RSA key (slow: tens of milliseconds of CPU)."""
        key_type = self.request.key_type
        if self.request.csr is not None:
            return False
        return key_type is None or (isinstance(key_type, str) and key_type.startswith("rsa"))

    def start(self) -> tuple[IssuedCertificate, Commit]:
        """Sign, and hand the ledger row over (see :meth:`Authority.issue_pending`)."""
        return self.authority.issue_pending(self.principal, self.request)

    def run(self) -> Reply:
        """Issue here and now, waiting for the commit (the Lambda front end)."""
        issued, commit = self.start()
        reply = issued_reply(issued)
        commit.wait()
        log_issued(issued.record)
        return reply


class Routes:
    """The routes that users and admins call, as plain methods returning :class:`Reply`.

    Which route calls which method, and who may call it, is :data:`nodecert.http.api.ROUTES`.
    """

    def __init__(
        self,
        authority: Authority,
        administration: Administration,
        verifier: TokenVerifier,
        auditor: AuditReader | None = None,
    ) -> None:
        self.authority = authority
        self.administration = administration
        self.verifier = verifier
        self.auditor = auditor or AuditReader(administration.audit, administration.ledger)

    @classmethod
    def for_service(cls, service: Service) -> Routes:
        """The v1 routes of ``service``."""
        return cls(service.authority, service.administration, service.verifier)

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller named by an ``Authorization: Bearer`` header value.

        Raises:
            AuthenticationError: no header, another scheme, or a token that fails.
        """
        return self.verifier.verify(bearer_token(authorization))

    def generate_cert(
        self, principal: Principal, body: bytes, *, idempotency_key: str | None = None
    ) -> Issuance:
        """``POST /generate-cert``: the request read (once), to be issued (201) by the caller.

        What is left, signing and the ledger commit, is the :class:`Issuance`: each front
        end runs it where it may wait (see :class:`nodecert.http.api.Runs`).
        """
        request = self.issue_request(principal, body, idempotency_key=idempotency_key)
        return Issuance(self.authority, principal, request)

    @staticmethod
    def issue_request(
        principal: Principal, body: bytes, *, idempotency_key: str | None = None
    ) -> IssueRequest:
        """The ``POST /generate-cert`` body as an :class:`IssueRequest`.

        Raises:
            InvalidRequestError: not a JSON object of the known fields, or no nodeId.
        """
        data = parse_object(body, allowed=_ISSUE_FIELDS)
        if "nodeId" not in data:
            raise InvalidRequestError("nodeId: required")
        return IssueRequest(
            node_id=data["nodeId"],
            key_type=data.get("keyType"),
            csr=data.get("csr"),
            validity_days=data.get("validityDays"),
            claimed_user_id=data.get("userId"),
            request_id=_request_id(principal, idempotency_key),
        )

    def issue_node_certificate(
        self,
        principal: Principal,
        node_id: str,
        body: bytes,
        *,
        idempotency_key: str | None = None,
    ) -> Reply:
        """``POST /v1/nodes/{nodeId}/certificate`` (admin): the node's own certificate (201)."""
        data = parse_object(body, allowed=_NODE_CERT_FIELDS)
        if "dnsNames" not in data and "ipAddresses" not in data:
            raise InvalidRequestError("dnsNames, ipAddresses: at least one is required")
        issued = self.authority.issue_node_certificate(
            principal,
            node_id,
            dns_names=data.get("dnsNames"),
            ip_addresses=data.get("ipAddresses"),
            key_type=data.get("keyType"),
            csr=data.get("csr"),
            validity_days=data.get("validityDays"),
            request_id=_request_id(principal, idempotency_key),
        )
        log.info(
            "issued node certificate serial=%s node=%s by=%s",
            issued.record.serial,
            issued.record.node_id,
            principal.user_id,
        )
        return issued_reply(issued)

    def list_certificates(
        self,
        principal: Principal,
        *,
        node_id: str | None,
        status: str | None,
        limit: str | None = None,
        cursor: str | None = None,
    ) -> Reply:
        """``GET /v1/certificates``: the caller's certificates, newest first, a page at a time.

        ``limit`` (1-1000, default 100) bounds a page; ``nextCursor`` in the answer, passed
        back as ``cursor``, asks for the next one (null on the last page).
        """
        size = _page_size(limit)
        wanted = None
        if status is not None:
            try:
                wanted = CertificateStatus(status)
            except ValueError:
                raise InvalidRequestError(
                    f"status: {status[:20]!r} is not one of active, superseded, revoked, expired"
                ) from None
        # One row more than the page says whether there is a next one.
        rows = self.administration.list_certificates(
            principal, node_id=node_id, status=wanted, limit=size + 1, after=cursor
        )
        page = rows[:size]
        more = len(rows) > size
        return Reply(
            200,
            {
                "certificates": [certificate_json(r) for r in page],
                "nextCursor": page[-1].serial if more and page else None,
            },
        )

    def get_certificate(self, principal: Principal, serial: str) -> Reply:
        """``GET /v1/certificates/{serial}``."""
        return Reply(200, certificate_json(self.administration.get_certificate(principal, serial)))

    def revoke(self, principal: Principal, serial: str, body: bytes) -> Reply:
        """``POST /v1/certificates/{serial}/revoke`` with optional ``{"reason": ...}``."""
        data = parse_object(body, allowed=frozenset({"reason"}), empty_ok=True)
        reason = reason_of(data.get("reason", RevocationReason.UNSPECIFIED.value))
        row = self.administration.revoke(principal, serial, reason)
        log.info("revoked serial=%s by=%s reason=%s", row.serial, principal.user_id, reason)
        return Reply(200, certificate_json(row))

    def revoke_all(
        self,
        principal: Principal,
        body: bytes,
        *,
        node_id: str | None = None,
        user_id: str | None = None,
    ) -> Reply:
        """``POST /v1/nodes/{nodeId}/revoke-all`` or ``POST /v1/users/{userId}/revoke-all``."""
        data = parse_object(body, allowed=frozenset({"reason"}), empty_ok=True)
        reason = reason_of(data.get("reason", RevocationReason.UNSPECIFIED.value))
        rows = self.administration.revoke_all(
            principal, node_id=node_id, user_id=user_id, reason=reason
        )
        log.info(
            "revoke-all node=%s user=%s by=%s count=%d",
            node_id,
            user_id,
            principal.user_id,
            len(rows),
        )
        return Reply(200, {"revoked": [certificate_json(r) for r in rows], "count": len(rows)})

    def put_node(self, principal: Principal, node_id: str, body: bytes) -> Reply:
        """``PUT /v1/nodes/{nodeId}`` with ``{"owner": userId}`` (admin)."""
        data = parse_object(body, allowed=frozenset({"owner"}))
        if "owner" not in data:
            raise InvalidRequestError("owner: required")
        change = self.administration.put_node(principal, node_id, data["owner"])
        record = change.record
        log.info("node put node=%s owner=%s by=%s", record.node_id, record.owner, principal.user_id)
        return Reply(
            200,
            node_json(record)
            | {
                "previousOwner": change.previous_owner,
                "revoked": change.revoked,
                "revokedNodeCertificates": [certificate_json(r) for r in change.node_certificates],
            },
        )

    def get_node(self, principal: Principal, node_id: str) -> Reply:
        """``GET /v1/nodes/{nodeId}`` (admin)."""
        return Reply(200, node_json(self.administration.get_node(principal, node_id)))

    def delete_node(self, principal: Principal, node_id: str) -> Reply:
        """``DELETE /v1/nodes/{nodeId}`` (admin): also revokes the node's certificates.

        The reply says how many it revoked, and which of them were the node's own (server)
        certificates, which the node goes on serving until a new one is issued.
        """
        removal = self.administration.remove_node(principal, node_id)
        log.info("node deleted node=%s by=%s", removal.node_id, principal.user_id)
        return Reply(
            200,
            {
                "nodeId": removal.node_id,
                "revoked": removal.revoked,
                "revokedNodeCertificates": [certificate_json(r) for r in removal.node_certificates],
            },
        )

    def list_nodes(self, principal: Principal) -> Reply:
        """``GET /v1/nodes``: all nodes (admin) or the caller's own."""
        return Reply(
            200, {"nodes": [node_json(n) for n in self.administration.list_nodes(principal)]}
        )

    def audit(
        self,
        principal: Principal,
        *,
        user: str | None = None,
        node: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: str | None = None,
    ) -> Reply:
        """``GET /v1/audit``: issuance, renewal, revocation and admin entries, newest first.

        Admins read every entry, users the entries that concern them; each filter narrows.
        """
        query = AuditQuery(
            user_id=None if user is None else validate_id(user, field="user"),
            node_id=None if node is None else validate_id(node, field="node"),
            action=None if action is None else _action(action),
            since=None if since is None else _instant(since, "since"),
            until=None if until is None else _instant(until, "until"),
            limit=_page_size(limit),
        )
        entries = self.auditor.read(principal, query)
        return Reply(200, {"entries": [audit_json(e) for e in entries], "count": len(entries)})


def log_issued(record: CertificateRecord) -> None:
    """Log a certificate once its ledger row is durable (never one that was dropped)."""
    log.info(
        "issued serial=%s user=%s node=%s key_type=%s request_id=%s",
        record.serial,
        record.user_id,
        record.node_id,
        record.key_type,
        record.request_id,
    )


def audit_json(entry: AuditEntry) -> dict[str, str]:
    """One audit entry as the API shows it (``at`` in UTC, ISO 8601)."""
    return {
        "at": entry.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "userId": entry.user_id,
        "nodeId": entry.node_id,
        "source": entry.source,
        "detail": entry.detail,
    }


_ACTION = re.compile(r"[a-z_]{1,32}(\.[a-z_]{1,32}){0,3}\.?")


def _action(value: str) -> str:
    if not _ACTION.fullmatch(value):
        raise InvalidRequestError(
            f"action: {value[:40]!r} is not an action name (certificate.revoke) or a prefix"
            " ending in a dot (node.)"
        )
    return value


def _instant(value: str, name: str) -> datetime:
    # ISO 8601 with a time zone (2026-12-01T00:00:00Z), or a date (midnight UTC).
    try:
        if len(value) > 40 or not value.isascii():
            raise ValueError
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(
            f"{name}: {value[:40]!r} is not an ISO 8601 time (2026-12-01T00:00:00Z) or date"
        ) from None
    if parsed.tzinfo is None:
        if "T" in value or " " in value:
            raise InvalidRequestError(f"{name}: give a time zone (Z or +01:00)")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _page_size(limit: str | None) -> int:
    if limit is None:
        return _DEFAULT_PAGE
    # ASCII digits only, and few of them: str.isdigit() and int() also take "²" and
    # Arabic-Indic digits, and int() refuses (ValueError) more than 4,300 digits.
    if not _PAGE_SIZE.fullmatch(limit) or not 1 <= int(limit) <= _MAX_PAGE:
        raise InvalidRequestError(f"limit: {limit[:20]!r} is not a number from 1 to {_MAX_PAGE}")
    return int(limit)


def _request_id(principal: Principal, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        # The HTTP request's own id when there is one: the ledger row and the log lines
        # (and X-Request-Id) of one request then share it.
        return current_request_id() or uuid.uuid4().hex
    if not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise InvalidRequestError("Idempotency-Key: 1-128 characters from A-Z a-z 0-9 . _ : -")
    # Scoped to the caller, so two users picking the same key never share a request.
    digest = hashlib.sha256(f"{principal.user_id}\0{idempotency_key}".encode()).hexdigest()
    return f"idem-{digest[:32]}"
