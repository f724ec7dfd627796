"""Issuing: authenticate → authorize → key/CSR → sign → record.

Adapters (HTTP, Lambda, CLI) parse their input into the values below, call one method of
:class:`Authority` and render what it returns or raises. Listings, revocation and the node
directory are :class:`~nodecert.issuing.administration.Administration`'s, an object over
the same collaborators.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from cryptography import x509

from nodecert.core.context import current_source, note_issuance
from nodecert.core.errors import (
    AuthorizationError,
    BackendUnavailableError,
    ConflictError,
    InvalidIdentifierError,
    NodecertError,
    NotFoundError,
    QuotaExceededError,
)
from nodecert.core.identity import (
    Identity,
    format_serial,
    validate_dns_names,
    validate_id,
    validate_ip_addresses,
)
from nodecert.core.keys import (
    KeyType,
    PrivateKey,
    PublicKey,
    build_csr,
    fingerprint,
    generate_private_key,
)
from nodecert.core.keys import private_key_pem as render_private_key
from nodecert.core.metrics import NO_METRICS, Metrics
from nodecert.core.policy import OwnershipPolicy, ValidityPolicy, require_admin
from nodecert.core.ports import AuditTrail, CABackend, Ledger, NodeDirectory
from nodecert.core.values import (
    AuditEntry,
    CertificateRecord,
    CertificateStatus,
    Commit,
    Principal,
    Profile,
    SigningRequest,
)
from nodecert.issuing.idempotency import Claim, IdempotencyGuard, nothing_issued, request_hash
from nodecert.issuing.quota import QuotaPolicy
from nodecert.issuing.shapes import (
    IssuedCertificate,
    IssueRequest,
    chain_pem,
    csr_public_key,
    key_request,
    pem,
)
from nodecert.issuing.succession import already_renewed, record_successor
from nodecert.issuing.throttle import Throttle

__all__ = ["Authority", "IssueRequest", "IssuedCertificate"]

log = logging.getLogger("nodecert")

# Certificates start a minute in the past so that a client whose clock is slightly behind
# the server's can use one at once.
_BACKDATE = timedelta(minutes=1)


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
        self._ca_label = {"ca": labels.get("ca", "ca")}
        self._store_label = {"store": labels.get("store", "store")}

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

    def _observe_commit(self, started: float) -> None:
        seconds = time.perf_counter() - started
        self.metrics.observe("ledger_commit_seconds", self._store_label, seconds)

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
        return self._sign_and_record(
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
        issued, _ = self._sign_and_record(
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
        issued, commit = self._sign_and_record(
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

    def _sign_and_record(
        self,
        identity: Identity,
        *,
        key_type: KeyType,
        csr: x509.CertificateSigningRequest | None,
        lifetime: timedelta,
        request_id: str,
        renewed_from: str | None = None,
        profile: Profile = Profile.CLIENT,
        dns_names: tuple[str, ...] = (),
        user_subject: str | None = None,
        ip_addresses: tuple[str, ...] = (),
    ) -> tuple[IssuedCertificate, Commit]:
        """Make the key (unless there is a CSR), have the CA sign, hand over the ledger row.

        The returned commit says when the row is durable; it is already done unless the CA
        built the certificate in this process (see :meth:`issue_pending`).
        """
        claim: Claim | None = None
        guard = self.idempotency
        # Hashed only when there is a key to claim: most requests carry none.
        if guard is not None and guard.keyed(request_id):
            digest = request_hash(
                identity,
                profile=profile,
                key_type=key_type.value,
                csr=csr,
                lifetime=lifetime,
                dns_names=dns_names,
                ip_addresses=ip_addresses,
            )
            claim = guard.claim(request_id, identity, digest, now=self.clock())
        asked_ca = False
        in_process = self.ca.builds_in_process
        try:
            key: PrivateKey | None = None
            signing_csr: x509.CertificateSigningRequest | None = None
            if csr is None:
                key = self.keygen(key_type)
                public_key = key.public_key()
                if not in_process:
                    signing_csr = build_csr(
                        key,
                        identity,
                        organization=self.organization,
                        trust_domain=self.trust_domain,
                    )
            else:
                signing_csr = csr
                public_key = csr_public_key(csr)
            now = self.clock()
            asked_ca = True
            started = time.perf_counter()
            signed = self.ca.issue(
                SigningRequest(
                    csr=signing_csr,
                    identity=identity,
                    not_before=now - _BACKDATE,
                    not_after=now + lifetime,
                    request_id=request_id,
                    profile=profile,
                    dns_names=dns_names,
                    public_key=public_key,
                    ip_addresses=ip_addresses,
                )
            )
        except Exception as exc:
            accepted_nothing = not asked_ca or nothing_issued(exc, in_process=in_process)
            if guard is not None and claim is not None and accepted_nothing:
                # The retry that the Idempotency-Key exists for must be able to succeed.
                guard.release(claim)
            if asked_ca and isinstance(exc, NodecertError):
                self.metrics.count("ca_errors", {**self._ca_label, "code": exc.code})
            raise
        self.metrics.observe("ca_call_seconds", self._ca_label, time.perf_counter() - started)
        certificate = signed.certificate
        if not in_process:
            self._check_signed(certificate, public_key, identity)
        record = CertificateRecord(
            serial=format_serial(certificate.serial_number),
            user_id=identity.user_id,
            node_id=identity.node_id,
            key_type=key_type.value,
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            fingerprint_sha256=fingerprint(certificate),
            request_id=request_id,
            created_at=now,
            profile=profile,
            renewed_from=renewed_from,
            issuer=signed.issuer,
            dns_names=dns_names,
            user_subject=user_subject,
            ip_addresses=ip_addresses,
        )
        # Only a certificate built here has a serial that no retry can bring back; a remote
        # CA's answer to a retried request needs the conflict check of _record, at once.
        if in_process and renewed_from is None:
            started = time.perf_counter()
            commit = self.ledger.record(record)
            commit.when_settled(lambda: self._observe_commit(started))
        else:
            started = time.perf_counter()
            if renewed_from is not None:
                record = record_successor(self.ledger, record)
            else:
                record = self._record(record)
            self._observe_commit(started)
            commit = Commit.done()
        issued = IssuedCertificate(
            record=record,
            certificate_pem=pem(certificate),
            chain_pem=chain_pem(tuple(signed.chain)),
            private_key_pem=render_private_key(key) if key is not None else None,
        )
        return issued, commit

    def _record(self, record: CertificateRecord) -> CertificateRecord:
        try:
            self.ledger.record(record).wait()
        except ConflictError:
            # A remote CA answers a retried request (same idempotency token) with the
            # certificate it already issued. Same request, same certificate: hand it out
            # again instead of failing; anything else is a real clash.
            existing = self.ledger.get(record.serial)
            if existing is None or (existing.request_id, existing.fingerprint_sha256) != (
                record.request_id,
                record.fingerprint_sha256,
            ):
                raise
            return existing
        return record

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

    def _check_signed(
        self,
        certificate: x509.Certificate,
        public_key: PublicKey,
        identity: Identity,
    ) -> None:
        # A CA backend that signed something other than what was asked for (another key, a
        # template that dropped the SAN) must never hand out a credential.
        if certificate.public_key() != public_key:
            raise BackendUnavailableError("ca: returned a certificate for a different key")
        try:
            signed_identity = Identity.from_certificate(certificate, trust_domain=self.trust_domain)
        except InvalidIdentifierError as exc:
            raise BackendUnavailableError(
                "ca: returned a certificate without our identity"
            ) from exc
        if signed_identity != identity:
            raise BackendUnavailableError("ca: returned a certificate for another identity")
