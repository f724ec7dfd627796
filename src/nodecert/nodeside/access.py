"""The node-side access decision: may this client certificate call this node now?

One class, :class:`AccessDecider`, makes the decision for every front end: the API Gateway
authorizer (``aws/authorizer.py``), the node's own Python app (``nodecert.nodeside.verify``)
and nginx through ``POST /v1/authorize``. A certificate is allowed only when all hold:

1. it parses, and it is within its validity window (an optional grace after expiry is
   used by renewal only);
2. it chains to one of our CA certificates (signature checked with pyca ``cryptography``'s
   RFC 5280 client verifier, so CA constraints are enforced too) and names the clientAuth
   extended key usage (which that verifier does not require to be present);
3. it carries a nodecert identity (SPIFFE URI authoritative, subject agreeing) in our trust
   domain, and its node is the target node;
4. the ledger knows it (same fingerprint, same identity) and it is not revoked: revoking is
   a ledger write, so the very next decision denies, with no CRL lag;
5. the node directory still names the certificate's user as the node's owner (a transfer
   or a deletion denies at once, even before the revocation sweep finishes).

Every decision costs at most one ledger ``get`` and one ``owner_of``; CA certificates are
parsed once. A store that cannot answer denies (fails closed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from nodecert.core.decision import AccessDeniedError, Decision, DenyReason
from nodecert.core.errors import InvalidIdentifierError
from nodecert.core.identity import Identity, format_serial, validate_id
from nodecert.core.keys import fingerprint
from nodecert.core.ports import Ledger, NodeDirectory
from nodecert.core.values import CertificateStatus, IssuerSet
from nodecert.nodeside.trust import Chain, Trust

__all__ = [
    "AccessDecider",
    "AccessDeniedError",
    "Decision",
    "DenyReason",
    "load_certificate",
]

log = logging.getLogger("nodecert")

# A PEM certificate with a long chain of extensions is a few KiB; refuse anything bigger
# before parsing it, since the input comes straight from the network.
_MAX_CERTIFICATE_BYTES = 16 * 1024


def load_certificate(value: x509.Certificate | str | bytes) -> x509.Certificate:
    """Parse a PEM (str or bytes) or DER (bytes) certificate; pass a parsed one through.

    Raises:
        InvalidIdentifierError: when it is empty, too large or not a certificate.
    """
    if isinstance(value, x509.Certificate):
        return value
    data = value.encode("utf-8", "replace") if isinstance(value, str) else bytes(value)
    if not data.strip():
        raise InvalidIdentifierError("certificate: empty")
    if len(data) > _MAX_CERTIFICATE_BYTES:
        raise InvalidIdentifierError(f"certificate: larger than {_MAX_CERTIFICATE_BYTES} bytes")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise InvalidIdentifierError("certificate: not a parsable X.509 certificate") from exc


def _names_client_auth(certificate: x509.Certificate) -> bool:
    # The RFC 5280 verifier accepts a leaf without extendedKeyUsage ("any purpose");
    # nodecert's profiles always name clientAuth, so one that does not was not made by us.
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in usage


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AccessDecider:
    """Decides whether a client certificate may call a node.

    Args:
        trust_anchors: The root CA certificate(s) of our CA.
        ledger: The certificate ledger (revocation state).
        nodes: The node directory (current owners).
        trust_domain: Our SPIFFE trust domain.
        intermediates: Intermediate CA certificates between a leaf and a root (ACM PCA
            subordinate CAs); API Gateway hands over the leaf only.
        clock: Returns the current time, timezone-aware UTC.
        chain_source: Instead of ``trust_anchors``: fetches the CA chain (issuing CA
            first, root last) on the first decision.
        check_owner: Whether the node must still belong to the certificate's user in the
            node directory. Off for the ``claims`` and ``open`` ownership policies, which
            keep no directory: there the ledger (revocation) is the only state checked.
        issuer_source: Instead of the above: the CA's :class:`IssuerSet`, asked before
            every decision (a rotating CA answers the same object until it rotates), so a
            rotation takes effect on the next decision. Certificates of its ``retired``
            issuing CAs are refused, except by :meth:`decide_for_renewal`.
    """

    def __init__(
        self,
        *,
        trust_anchors: Sequence[x509.Certificate],
        ledger: Ledger,
        nodes: NodeDirectory,
        trust_domain: str,
        intermediates: Sequence[x509.Certificate] = (),
        clock: Callable[[], datetime] = _utcnow,
        chain_source: Callable[[], Sequence[x509.Certificate]] | None = None,
        check_owner: bool = True,
        issuer_source: Callable[[], IssuerSet] | None = None,
    ) -> None:
        if not trust_anchors and chain_source is None and issuer_source is None:
            raise ValueError("AccessDecider: at least one trust anchor is required")
        self.ledger = ledger
        self.nodes = nodes
        self.trust_domain = trust_domain
        self.clock = clock
        self._trust = Trust(
            trust_anchors=trust_anchors,
            intermediates=intermediates,
            chain_source=chain_source,
            issuer_source=issuer_source,
        )
        self._check_owner = check_owner

    @classmethod
    def from_chain_source(
        cls,
        chain_source: Callable[[], Sequence[x509.Certificate]],
        *,
        ledger: Ledger,
        nodes: NodeDirectory,
        trust_domain: str,
        clock: Callable[[], datetime] = _utcnow,
        check_owner: bool = True,
    ) -> AccessDecider:
        """Like :meth:`from_chain`, but the chain is fetched on the first decision.

        A process that never decides (a Lambda serving only issuance) then never asks
        the CA for its chain: with ACM PCA that is two API calls off every cold start.
        A failing fetch denies (``untrusted_issuer``) and is tried again next time.
        """
        return cls(
            trust_anchors=(),
            ledger=ledger,
            nodes=nodes,
            trust_domain=trust_domain,
            clock=clock,
            chain_source=chain_source,
            check_owner=check_owner,
        )

    @classmethod
    def from_chain(
        cls,
        chain: Sequence[x509.Certificate],
        *,
        ledger: Ledger,
        nodes: NodeDirectory,
        trust_domain: str,
        clock: Callable[[], datetime] = _utcnow,
    ) -> AccessDecider:
        """Build from a CA backend's chain (issuing CA first, root last)."""
        return cls(
            trust_anchors=[chain[-1]] if chain else [],
            intermediates=list(chain[:-1]),
            ledger=ledger,
            nodes=nodes,
            trust_domain=trust_domain,
            clock=clock,
        )

    def decide(self, certificate: x509.Certificate | str | bytes, target_node: str) -> Decision:
        """Decide whether ``certificate`` may call ``target_node`` now. Never raises."""
        try:
            node = validate_id(target_node, field="target node")
        except InvalidIdentifierError as exc:
            return Decision.deny(DenyReason.INVALID_TARGET, exc.detail)
        return self._decide(certificate, node, timedelta(0))

    def decide_for_renewal(
        self, certificate: x509.Certificate | str | bytes, *, grace: timedelta = timedelta(0)
    ) -> Decision:
        """The same checks for the certificate's own node, with ``grace`` after expiry.

        Used by renewal: the certificate proves who is asking, so its node is the target.
        """
        return self._decide(certificate, None, grace)

    def require(self, certificate: x509.Certificate | str | bytes, target_node: str) -> Identity:
        """Like :meth:`decide`, but raise on denial and return the identity when allowed.

        Raises:
            AccessDeniedError: carrying the :class:`Decision`.
        """
        decision = self.decide(certificate, target_node)
        if not decision.allowed or decision.identity is None:
            raise AccessDeniedError(decision)
        return decision.identity

    def _decide(
        self, value: x509.Certificate | str | bytes, target_node: str | None, grace: timedelta
    ) -> Decision:
        try:
            certificate = load_certificate(value)
        except InvalidIdentifierError as exc:
            return Decision.deny(DenyReason.MALFORMED_CERTIFICATE, exc.detail)
        serial = format_serial(certificate.serial_number)
        now = self.clock()
        not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
        if now < not_before:
            return Decision.deny(DenyReason.NOT_YET_VALID, "not valid yet", serial=serial)
        if now > not_after + grace:
            return Decision.deny(DenyReason.EXPIRED, "expired", serial=serial)
        chained = self._trust.chains(certificate, min(now, not_after))
        if chained is Chain.RETIRED and target_node is not None:
            return Decision.deny(
                DenyReason.UNTRUSTED_ISSUER,
                "its issuing CA was retired at once: renew it (nodecert renew)",
                serial=serial,
            )
        if chained is Chain.NONE:
            return Decision.deny(
                DenyReason.UNTRUSTED_ISSUER, "does not chain to our CA", serial=serial
            )
        if not _names_client_auth(certificate):
            return Decision.deny(
                DenyReason.UNTRUSTED_ISSUER, "no clientAuth extended key usage", serial=serial
            )
        try:
            identity = Identity.from_certificate(certificate, trust_domain=self.trust_domain)
        except InvalidIdentifierError as exc:
            return Decision.deny(DenyReason.NO_IDENTITY, exc.detail, serial=serial)
        if target_node is not None and identity.node_id != target_node:
            return Decision.deny(
                DenyReason.WRONG_NODE,
                f"issued for node {identity.node_id!r}, not {target_node!r}",
                identity=identity,
                serial=serial,
            )
        return self._check_state(certificate, identity, serial)

    def _check_state(
        self, certificate: x509.Certificate, identity: Identity, serial: str
    ) -> Decision:
        try:
            row = self.ledger.get(serial)
            owner = (
                self.nodes.owner_of(identity.node_id)
                if row is not None and self._check_owner
                else identity.user_id
            )
        except Exception as exc:
            # Any store failure must deny, never allow: fail closed.
            log.warning("access: store unavailable for serial=%s: %s", serial, exc)
            return Decision.deny(
                DenyReason.STORE_UNAVAILABLE,
                "cannot check revocation now",
                identity=identity,
                serial=serial,
            )
        if (
            row is None
            or row.fingerprint_sha256 != fingerprint(certificate)
            or (row.user_id, row.node_id) != (identity.user_id, identity.node_id)
        ):
            return Decision.deny(
                DenyReason.UNKNOWN_CERTIFICATE,
                "not in the ledger",
                identity=identity,
                serial=serial,
            )
        if row.status is CertificateStatus.REVOKED:
            return Decision.deny(DenyReason.REVOKED, "revoked", identity=identity, serial=serial)
        if owner != identity.user_id:
            return Decision.deny(
                DenyReason.NODE_NOT_OWNED,
                f"node {identity.node_id!r} is no longer owned by {identity.user_id!r}",
                identity=identity,
                serial=serial,
            )
        return Decision(True, None, identity, serial, "allowed")
