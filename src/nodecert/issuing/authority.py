"""Issuing: authenticate → authorize → key/CSR → sign → record.

Adapters (HTTP, Lambda, CLI) parse their input into the values below, call one method of
:class:`Authority` and render what it returns or raises. The authority decides who may get
which certificate (ids, ownership, quota, renewal rules); making it (the key, the CA, the
ledger row) is :func:`~nodecert.issuing.signing.sign_and_record`'s. Listings, revocation
and the node directory are :class:`~nodecert.issuing.administration.Administration`'s, an
object over the same collaborators.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from nodecert.core.context import current_source, note_issuance
from nodecert.core.errors import (
    AuthorizationError,
    InvalidIdentifierError,
    NodecertError,
    NotFoundError,
    QuotaExceededError,
)
from nodecert.core.identity import (
    Identity,
    validate_dns_names,
    validate_id,
    validate_ip_addresses,
)
from nodecert.core.keys import KeyType, PrivateKey, generate_private_key
from nodecert.core.metrics import NO_METRICS, Metrics
from nodecert.core.policy import OwnershipPolicy, ValidityPolicy, require_admin
from nodecert.core.ports import AuditTrail, CABackend, Ledger, NodeDirectory
from nodecert.core.values import (
    AuditEntry,
    CertificateStatus,
    Commit,
    Principal,
    Profile,
)
from nodecert.issuing.idempotency import IdempotencyGuard
from nodecert.issuing.quota import QuotaPolicy
from nodecert.issuing.renewal_once import already_renewed
from nodecert.issuing.signing import sign_and_record
from nodecert.issuing.throttle import Throttle
from nodecert.issuing.values import IssuedCertificate, IssueRequest, key_request, pem

__all__ = ["Authority", "IssueRequest", "IssuedCertificate"]

log = logging.getLogger("nodecert")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Authority:
    """Issues certificates: client, node (server) and renewed ones.

    Args:
        ca: The CA backend that signs.
        ledger: Where every issued certificate is recorded before it is returned.
        nodes: The node directory.
        ownership: Who may have a certificate for which node.
        validity: Certificate lifetimes.
        organization: The ``O=`` of issued certificates.
        trust_domain: The SPIFFE trust domain of issued certificates.
        keygen: Makes server-side private keys (a pre-generating pool in production).
        clock: Returns the current time, timezone-aware UTC.
        quota: Issuance limits (none when omitted).
        idempotency: Claims client ``Idempotency-Key`` values before the CA signs, so a
            retry never makes (and bills) a second certificate (none when omitted).
        metrics: Where the CA call and the ledger commit are timed, CA errors counted.
        audit: Where refusals of authenticated callers are recorded (none when omitted).
        labels: The ``ca`` and ``store`` names those metrics carry.
    """

    def __init__(
        self,
        *,
        ca: CABackend,
        ledger: Ledger,
        nodes: NodeDirectory,
        ownership: OwnershipPolicy,
        validity: ValidityPolicy,
        organization: str,
        trust_domain: str,
        keygen: Callable[[KeyType], PrivateKey] = generate_private_key,
        clock: Callable[[], datetime] = _utcnow,
        quota: QuotaPolicy | None = None,
        idempotency: IdempotencyGuard | None = None,
        metrics: Metrics = NO_METRICS,
        labels: Mapping[str, str] | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        self.ca = ca
        self.ledger = ledger
        self.nodes = nodes
        self.ownership = ownership
        self.validity = validity
        self.organization = organization
        self.trust_domain = trust_domain
        self.keygen = keygen
        self.clock = clock
        self.quota = quota
        self.idempotency = idempotency
        self.metrics = metrics
        self.audit = audit
        self._denials = Throttle(timedelta(minutes=1))
        labels = labels or {}
        self.ca_label = {"ca": labels.get("ca", "ca")}
        self.store_label = {"store": labels.get("store", "store")}

    def issue(self, principal: Principal, request: IssueRequest) -> IssuedCertificate:
        """Issue a client certificate for one of ``principal``'s nodes.

        Raises:
            InvalidRequestError: bad nodeId, keyType, validityDays or CSR.
            AuthorizationError: a body userId that is not the caller, or not their node.
            BackendUnavailableError: the CA or the ledger cannot answer now; nothing was
                returned and nothing was recorded.
        """
        issued, commit = self.issue_pending(principal, request)
        commit.wait()
        return issued

    def _record_denial(self, principal: Principal, node_id: str, error: NodecertError) -> None:
        # An authenticated caller refused a certificate (not their node, over quota) goes
        # to the audit trail: at most once a minute per user, node and reason, so that a
        # caller hammering the route cannot flood the store (the log and the metrics count
        # every refusal).
        if self.audit is None:
            return
        now = self.clock()
        if not self._denials.admit((principal.user_id, node_id, error.code), now):
            return
        entry = AuditEntry(
            at=now,
            actor=principal.user_id,
            action="certificate.issue.denied",
            target=node_id,
            detail=f"{error.code}: {error.detail}"[:300],
            user_id=principal.user_id,
            node_id=node_id,
            source=current_source(),
        )
        try:
            self.audit.append_audit(entry)
        except NodecertError as exc:
            log.warning("audit: denial not stored (%s)", exc.detail)

    def issue_pending(
        self, principal: Principal, request: IssueRequest
    ) -> tuple[IssuedCertificate, Commit]:
        """Like :meth:`issue`, but return while the ledger row may be on its way to disk.

        The certificate must not leave the process before the :class:`Commit` completes;
        when it fails (with the error :meth:`issue` would have raised), the certificate
        must be dropped. Only a certificate the CA builds in this process can be pending:
        with another CA the row is committed first (a retried request must meet the
        ledger's conflict check at once) and the commit is already done.
        """
        node_id = validate_id(request.node_id, field="nodeId")
        if request.claimed_user_id is not None and request.claimed_user_id != principal.user_id:
            raise AuthorizationError("userId: does not match the authenticated user")
        identity = Identity(user_id=principal.user_id, node_id=node_id)
        lifetime = self.validity.lifetime(request.validity_days)
        csr, key_type = key_request(request.key_type, request.csr)
        note_issuance("csr" if csr is not None else key_type.value)
        try:
            self.ownership.check(principal, node_id, renewal=request.renewed_from is not None)
            if self.quota is not None:
                self.quota.check(
                    principal.user_id,
                    node_id,
                    self.ledger,
                    self.clock(),
                    renewal=request.renewed_from is not None,
                )
        except (AuthorizationError, QuotaExceededError) as exc:
            self._record_denial(principal, node_id, exc)
            raise
        return sign_and_record(
            self,
            identity,
            key_type=key_type,
            csr=csr,
            lifetime=lifetime,
            request_id=request.request_id,
            renewed_from=request.renewed_from,
            user_subject=principal.subject,
        )

    def issue_successor(
        self,
        serial: str,
        *,
        request_id: str,
        key_type: object | None = None,
        csr: object | None = None,
    ) -> IssuedCertificate:
        """Renew certificate ``serial``: its successor keeps what it had.

        The same identity, profile (a node certificate stays serverAuth + clientAuth),
        DNS names and lifetime, and a fresh key of the same type unless ``key_type`` or a
        ``csr`` says otherwise. The successor supersedes it in the same transaction that
        records the successor: a certificate renews at most once. Its owner must still own
        the node (``registry`` policy); renewals do not use up the per-node cap.

        Raises:
            AlreadyRenewedError: ``serial`` was renewed before (logged as a possible
                stolen key: two holders of one key).
            AuthorizationError: unknown or revoked, or the node changed owner.
            QuotaExceededError: the issuance rate.
            BackendUnavailableError: the CA or the ledger cannot answer now.
        """
        predecessor = self.ledger.get(serial)
        if predecessor is None or predecessor.status is CertificateStatus.REVOKED:
            raise AuthorizationError(f"serial: {serial} cannot be renewed (unknown or revoked)")
        if predecessor.status is CertificateStatus.SUPERSEDED:
            raise already_renewed(predecessor)
        identity = Identity(user_id=predecessor.user_id, node_id=predecessor.node_id)
        self.ownership.check(Principal(user_id=identity.user_id), identity.node_id, renewal=True)
        if self.quota is not None:
            self.quota.check(
                identity.user_id, identity.node_id, self.ledger, self.clock(), renewal=True
            )
        if key_type is None and csr is None:
            key_type = predecessor.key_type
        parsed_csr, parsed_type = key_request(key_type, csr)
        days = round((predecessor.not_after - predecessor.not_before) / timedelta(days=1))
        lifetime = self.validity.lifetime(min(max(days, 1), self.validity.max_days))
        issued, _ = sign_and_record(
            self,
            identity,
            key_type=parsed_type,
            csr=parsed_csr,
            lifetime=lifetime,
            request_id=request_id,
            renewed_from=predecessor.serial,
            profile=predecessor.profile,
            dns_names=predecessor.dns_names,
            user_subject=predecessor.user_subject,
            ip_addresses=predecessor.ip_addresses,
        )
        return issued

    def issue_node_certificate(
        self,
        principal: Principal,
        node_id: object,
        *,
        dns_names: object,
        request_id: str,
        key_type: object | None = None,
        csr: object | None = None,
        validity_days: object | None = None,
        ip_addresses: object | None = None,
    ) -> IssuedCertificate:
        """Issue a node's own (server) certificate: serverAuth + clientAuth, DNS names.

        Admin only. The certificate names the node's current owner and the node, like its
        users' client certificates, plus the host names the node serves under, so a node's
        TLS server and its clients can trust one CA.

        Raises:
            AuthorizationError: the caller is not an admin.
            NotFoundError: no such node in the directory.
            InvalidRequestError: bad DNS names, keyType, validityDays or CSR.
        """
        require_admin(principal)
        node = validate_id(node_id, field="nodeId")
        # Host names, addresses, or both: a node reached by address may have no name.
        names = () if dns_names is None or dns_names == [] else validate_dns_names(dns_names)
        addresses = (
            ()
            if ip_addresses is None or ip_addresses == []
            else validate_ip_addresses(ip_addresses)
        )
        if not names and not addresses:
            raise InvalidIdentifierError(
                "dnsNames, ipAddresses: give at least one host name or IP address"
            )
        lifetime = self.validity.lifetime(validity_days)
        parsed_csr, parsed_type = key_request(key_type, csr)
        note_issuance("csr" if parsed_csr is not None else parsed_type.value)
        owner = self.nodes.owner_of(node)
        if owner is None:
            raise NotFoundError(f"nodeId: no node {node!r}")
        issued, commit = sign_and_record(
            self,
            Identity(user_id=owner, node_id=node),
            key_type=parsed_type,
            csr=parsed_csr,
            lifetime=lifetime,
            request_id=request_id,
            profile=Profile.NODE,
            dns_names=names,
            ip_addresses=addresses,
        )
        commit.wait()
        return issued

    def ca_chain_pem(self) -> str:
        """The CA chain, issuing CA first, up to the root, as PEM."""
        return "".join(pem(c) for c in self.ca.chain())

    def ca_roots_pem(self) -> str:
        """The root certificate(s) alone, as PEM: the trust anchors for trust stores.

        The last certificate of the chain, and any other self-signed one in it.
        """
        chain = list(self.ca.chain())
        roots = [c for c in chain[:-1] if c.issuer == c.subject] + chain[-1:]
        return "".join(pem(c) for c in roots)
