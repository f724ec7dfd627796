"""The node-side HTTP routes without a web framework: authorize, renew, CRL, revoke-all.

``POST /v1/authorize`` is what nginx's ``auth_request`` calls. It is not an open oracle:

- with ``NODECERT_AUTHORIZE_SECRET`` set, the caller must send it in
  ``X-Nodecert-Authorize-Secret`` (compared in constant time), from anywhere;
- without it, only direct loopback peers (127.0.0.0/8, ::1) may call, i.e. an nginx on the
  same machine as nodecert. Forwarded-address headers never count: a request carrying
  ``X-Forwarded-For``, ``Forwarded`` or ``X-Real-IP`` is refused, because a server that
  honours them (uvicorn's ``--proxy-headers --forwarded-allow-ips``) rewrites the peer
  address from what the client wrote. A caller that sends a secret all the same believes
  it is checked: the first such request is logged at WARNING (once per process, never the
  value), so the operator learns that the service has no secret configured.

When the proxy's ``X-Client-Cert`` or ``X-Nodecert-Node`` header is present, a JSON body
naming another certificate or node is refused (400 ``conflicting_input``), never merged:
gateways that forward the client's body to the auth call must not let it speak. Either
header sent twice is refused the same way: one copy may be the client's.

It only ever receives a certificate that the proxy already verified in a TLS handshake
(``$ssl_client_escaped_cert``), re-checks it in full, and answers 200 (with the identity
in ``X-Nodecert-User``/``-Node``/``-Serial``) or 403 (with ``X-Nodecert-Reason``).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import threading
import urllib.parse
import uuid
from email.utils import format_datetime
from typing import Any

from nodecert.core.errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictingInputError,
    InvalidIdentifierError,
    InvalidRequestError,
    NotFoundError,
)
from nodecert.core.values import Principal, RevocationReason
from nodecert.http.contract import (
    Reply,
    certificate_json,
    issued_reply,
    parse_object,
    problem,
    reason_of,
)
from nodecert.issuing.administration import Administration
from nodecert.issuing.crl import CRLPublisher
from nodecert.issuing.renewal import RenewalRequest, Renewer
from nodecert.issuing.service import Service
from nodecert.nodeside.access import (
    AccessDecider,
    AccessDeniedError,
    Decision,
    DenyReason,
    load_certificate,
)

__all__ = ["SECRET_HEADER", "NodeSideRoutes"]

log = logging.getLogger("nodecert")

SECRET_HEADER = "X-Nodecert-Authorize-Secret"  # noqa: S105 - a header name, not a secret
_AUTHORIZE_FIELDS = frozenset({"certificate", "nodeId"})
_RENEW_FIELDS = frozenset({"csr", "keyType"})
_KEY_ID = re.compile(r"(?:[0-9A-Fa-f]{2}){1,64}")


class NodeSideRoutes:
    """The node side's routes: ``/v1/authorize``, ``/v1/renew``, ``/v1/crl``, revoke-all.

    Args:
        administration: Revokes a node's (or a user's) certificates.
        decider: The node-side decision.
        renewer: Proof-of-possession renewal.
        crl: The CRL publisher; None when the CA backend publishes its own CRL.
        authorize_secret: The shared secret for ``/v1/authorize`` (None: loopback only).
    """

    def __init__(
        self,
        *,
        administration: Administration,
        decider: AccessDecider,
        renewer: Renewer,
        crl: CRLPublisher | None,
        authorize_secret: str | None,
    ) -> None:
        self.administration = administration
        self.decider = decider
        self.renewer = renewer
        self.crl_publisher = crl
        self.authorize_secret = authorize_secret
        self._unchecked_secret = threading.Lock()
        self._warned = False

    @classmethod
    def for_service(cls, service: Service) -> NodeSideRoutes:
        """The node-side routes of ``service``."""
        return cls(
            administration=service.administration,
            decider=service.decider,
            renewer=service.renewer,
            crl=service.crl,
            authorize_secret=service.settings.authorize_secret,
        )

    def authorize(
        self,
        *,
        peer: str | None,
        secret: str | None,
        certificate: str | None,
        node_id: str | None,
        body: bytes = b"",
        forwarded: bool = False,
        repeated: tuple[str, ...] = (),
        secret_sent: bool | None = None,
    ) -> Reply:
        """``POST /v1/authorize``: the node-side decision for a proxy.

        The certificate and the target node come from ``X-Client-Cert`` (URL-escaped PEM)
        and ``X-Nodecert-Node``, or, for callers that send neither header, from a JSON body
        ``{"certificate", "nodeId"}``. ``forwarded`` says the request carries a
        forwarded-address header (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``);
        ``repeated`` names the proxy headers (``X-Client-Cert``, ``X-Nodecert-Node``) the
        request carries more than once. ``secret_sent`` says the request carries the secret
        header at all (default: ``secret`` is given), even when a repeated copy made
        ``secret`` None; with no secret configured, the first such request is logged.

        Raises:
            AuthenticationError: a secret is configured and the caller's is wrong.
            InvalidRequestError: a body field is not a string.
            AuthorizationError: no secret is configured and the caller is not a direct
                loopback peer (a forwarded-address header means it may not be).
            ConflictingInputError: a proxy header is repeated, or a proxy header is present
                and the body names another certificate or node.
        """
        sent = secret is not None if secret_sent is None else secret_sent
        self._check_caller(peer, secret, forwarded=forwarded, secret_sent=sent)
        if repeated:
            # Never pick one: a proxy that appends its header after the client's copy
            # (instead of replacing it) would let the client's copy speak.
            raise ConflictingInputError(
                f"authorize: {repeated[0]}: sent more than once; a proxy must"
                " replace the client's copy, not add to it"
            )
        data = parse_object(body, allowed=_AUTHORIZE_FIELDS, empty_ok=True)
        for name in sorted(data):
            if not isinstance(data[name], str):
                # Never str() it: {"nodeId": 1} would be decided for node "1".
                raise InvalidRequestError(f"{name}: must be a string")
        header_pem = urllib.parse.unquote(certificate) if certificate else None
        if certificate is not None or node_id is not None:
            # What the proxy established wins; a body (which a gateway may have copied
            # from the client's own request) may repeat it but never change it.
            _refuse_conflicts(data, header_pem, node_id)
            pem, target = header_pem, node_id or ""
        else:
            pem, target = data.get("certificate"), data.get("nodeId", "")
        if pem:
            decision = self.decider.decide(pem, target)
        else:
            decision = Decision.deny(DenyReason.NO_CERTIFICATE, "none was forwarded")
        if not decision.allowed or decision.identity is None:
            log.info(
                "authorize denied node=%r serial=%s reason=%s",
                str(target)[:128],
                decision.serial,
                decision.reason,
            )
            # The body's reason member is the wire-error table's; a proxy reads the header.
            reply = problem(AccessDeniedError(decision))
            reason = decision.reason.value if decision.reason else "denied"
            reply.headers["X-Nodecert-Reason"] = reason
            return reply
        identity = decision.identity
        headers = {
            "Cache-Control": "no-store",
            "X-Nodecert-User": identity.user_id,
            "X-Nodecert-Node": identity.node_id,
            "X-Nodecert-Serial": decision.serial or "",
        }
        body_out = {
            "allowed": True,
            "userId": identity.user_id,
            "nodeId": identity.node_id,
            "serial": decision.serial,
        }
        return Reply(200, body_out, headers)

    def renew(self, authorization: str | None, body: bytes) -> Reply:
        """``POST /v1/renew`` with ``Authorization: Bearer <proof-of-possession JWT>``.

        Raises:
            AuthenticationError: no token, or the token fails (see :class:`Renewer`).
            AccessDeniedError: the certificate may not be renewed.
        """
        data = parse_object(body, allowed=_RENEW_FIELDS, empty_ok=True)
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Authorization: expected 'Bearer <renewal token>'")
        issued = self.renewer.renew(
            RenewalRequest(
                token=token.strip(),
                request_id=uuid.uuid4().hex,
                csr=data.get("csr"),
                key_type=data.get("keyType"),
            )
        )
        record = issued.record
        log.info(
            "renewed serial=%s from=%s user=%s node=%s",
            record.serial,
            record.renewed_from,
            record.user_id,
            record.node_id,
        )
        return issued_reply(issued)

    def crl(self, if_none_match: str | None = None, issuer: str | None = None) -> Reply:
        """``GET /v1/crl``: the local CA's CRL, DER, with ``ETag`` and ``Last-Modified``.

        ``issuer`` (``?issuer=<key id>``, hex) asks for the CRL of another issuing CA than
        the one in use: one retiring after a rotation (``GET /v1/ca/issuers`` lists them).
        Answers 304 with no body when ``If-None-Match`` names the current CRL's tag.

        Raises:
            InvalidRequestError: ``issuer`` is not a key id (1-64 bytes, hex).
            NotFoundError: the CA backend publishes its own CRL (ACM PCA: its S3 bucket),
                or has no issuing CA of that key id.
        """
        if self.crl_publisher is None:
            raise NotFoundError("crl: this CA backend publishes its own CRL")
        publisher = self.crl_publisher
        if issuer is not None:
            if not _KEY_ID.fullmatch(issuer):
                raise InvalidRequestError("issuer: a key id is 2 to 128 hexadecimal digits")
            publisher = publisher.for_issuer(issuer.lower())
        published = publisher.published()
        headers = {
            "Cache-Control": "public, max-age=60",
            "ETag": published.etag,
            "Last-Modified": format_datetime(published.this_update, usegmt=True),
            "Expires": format_datetime(published.next_update, usegmt=True),
        }
        if _matches(if_none_match, published.etag):
            return Reply(304, b"", headers, media_type="application/pkix-crl")
        return Reply(200, published.der, headers, media_type="application/pkix-crl")

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

    def _check_caller(
        self, peer: str | None, secret: str | None, *, forwarded: bool, secret_sent: bool
    ) -> None:
        if self.authorize_secret is not None:
            given = (secret or "").encode()
            if not hmac.compare_digest(given, self.authorize_secret.encode()):
                raise AuthenticationError(f"{SECRET_HEADER}: missing or wrong")
            return
        if secret_sent:
            self._warn_unchecked_secret()
        if forwarded:
            # The peer address may have been rewritten from X-Forwarded-For (uvicorn's
            # proxy_headers), which anyone can send: loopback trust needs the socket itself.
            raise AuthorizationError(
                "authorize: a forwarded-address header is present; without"
                " NODECERT_AUTHORIZE_SECRET only direct loopback callers are trusted"
            )
        if not _is_loopback(peer):
            raise AuthorizationError(
                "authorize: only loopback callers, unless NODECERT_AUTHORIZE_SECRET is set"
            )

    def _warn_unchecked_secret(self) -> None:
        with self._unchecked_secret:
            if self._warned:
                return
            self._warned = True
        log.warning(
            "authorize: a request brings %s, but NODECERT_AUTHORIZE_SECRET is not set:"
            " the secret is not checked (only loopback callers are let in); set the same"
            " secret on the service, or stop sending one",
            SECRET_HEADER,
        )


def _refuse_conflicts(data: dict[str, Any], header_pem: str | None, node_id: str | None) -> None:
    body_node, body_pem = data.get("nodeId"), data.get("certificate")
    if body_node is not None and body_node != node_id:
        raise ConflictingInputError(
            "authorize: the body names a node the proxy's X-Nodecert-Node does not"
        )
    if body_pem is not None and not _same_certificate(body_pem, header_pem):
        raise ConflictingInputError(
            "authorize: the body names a certificate the proxy's X-Client-Cert does not"
        )


def _same_certificate(body_pem: object, header_pem: str | None) -> bool:
    if not isinstance(body_pem, str) or header_pem is None:
        return False
    try:
        return load_certificate(body_pem) == load_certificate(header_pem)
    except InvalidIdentifierError:
        return False


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _is_loopback(peer: str | None) -> bool:
    if not peer:
        return False
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False
