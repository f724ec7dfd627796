"""The routes that nodes and their proxies call: authorize (the proxy) and renew (the node).

Neither carries a user's token: ``POST /v1/renew`` proves possession of the certificate
being renewed, and ``POST /v1/authorize`` is called by the node's own reverse proxy.

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
import threading
import urllib.parse
import uuid
from typing import Any

from nodecert.core.errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictingInputError,
    InvalidIdentifierError,
    InvalidRequestError,
)
from nodecert.http.call import Call, bearer_token
from nodecert.http.contract import (
    Reply,
    issued_reply,
    parse_object,
    problem,
)
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
_FORWARDED_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
_PROXY_HEADERS = ("X-Client-Cert", "X-Nodecert-Node")
_AUTHORIZE_FIELDS = frozenset({"certificate", "nodeId"})
_RENEW_FIELDS = frozenset({"csr", "keyType"})


class NodeSideRoutes:
    """The routes of nodes and their proxies: ``/v1/authorize`` and ``/v1/renew``.

    Which route calls which method is :data:`nodecert.http.api.ROUTES`.

    Args:
        decider: The node-side decision.
        renewer: Proof-of-possession renewal.
        authorize_secret: The shared secret for ``/v1/authorize`` (None: loopback only).
    """

    def __init__(
        self,
        *,
        decider: AccessDecider,
        renewer: Renewer,
        authorize_secret: str | None,
    ) -> None:
        self.decider = decider
        self.renewer = renewer
        self.authorize_secret = authorize_secret
        self._unchecked_secret = threading.Lock()
        self._warned = False

    @classmethod
    def for_service(cls, service: Service) -> NodeSideRoutes:
        """The node-side routes of ``service``."""
        return cls(
            decider=service.decider,
            renewer=service.renewer,
            authorize_secret=service.settings.authorize_secret,
        )

    def authorize(self, call: Call) -> Reply:
        """``POST /v1/authorize``: the node-side decision for a proxy.

        The certificate and the target node come from ``X-Client-Cert`` (URL-escaped PEM)
        and ``X-Nodecert-Node``, or, for callers that send neither header, from a JSON body
        ``{"certificate", "nodeId"}``. A request carrying a forwarded-address header
        (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``) is not taken for a loopback
        peer. With no secret configured, the first request that sends one all the same is
        logged; a repeated secret counts as none (401), whichever copy is right.

        Raises:
            AuthenticationError: a secret is configured and the caller's is wrong.
            InvalidRequestError: a body field is not a string.
            AuthorizationError: no secret is configured and the caller is not a direct
                loopback peer (a forwarded-address header means it may not be).
            ConflictingInputError: a proxy header is repeated, or a proxy header is present
                and the body names another certificate or node.
        """
        secrets = call.headers.getlist(SECRET_HEADER)
        secret = secrets[0] if len(secrets) == 1 else None
        forwarded = any(call.headers.getlist(name) for name in _FORWARDED_HEADERS)
        self._check_caller(call.peer, secret, forwarded=forwarded, secret_sent=bool(secrets))
        repeated = [n for n in _PROXY_HEADERS if len(call.headers.getlist(n)) > 1]
        if repeated:
            # Never pick one: a proxy that appends its header after the client's copy
            # (instead of replacing it) would let the client's copy speak.
            raise ConflictingInputError(
                f"authorize: {repeated[0]}: sent more than once; a proxy must"
                " replace the client's copy, not add to it"
            )
        data = parse_object(call.body, allowed=_AUTHORIZE_FIELDS, empty_ok=True)
        for name in sorted(data):
            if not isinstance(data[name], str):
                # Never str() it: {"nodeId": 1} would be decided for node "1".
                raise InvalidRequestError(f"{name}: must be a string")
        certificate = call.first("X-Client-Cert")
        node_id = call.first("X-Nodecert-Node")
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
        token = bearer_token(authorization, what="renewal token")
        issued = self.renewer.renew(
            RenewalRequest(
                token=token,
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


def _is_loopback(peer: str | None) -> bool:
    if not peer:
        return False
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False
