"""The :class:`Client`: every route of the HTTP API as a typed method."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.client._errors import error_from_response
from nodecert.client._models import (
    CAIssuer,
    CertificateInfo,
    IssuedCertificate,
    NodeChange,
    NodeInfo,
    UnexpectedReplyError,
    audit_from,
    certificate_from,
    issued_from,
    issuer_from,
    list_of,
    node_change_from,
    node_from,
)
from nodecert.client._transport import Request, Response, Transport, UrllibTransport
from nodecert.core.errors import AuthenticationError, InvalidRequestError
from nodecert.core.identity import Identity, format_serial
from nodecert.core.keys import (
    PrivateKey,
    build_csr,
    generate_private_key,
    key_type_of,
    private_key_pem,
)

__all__ = ["Client"]

_PAGE = 1000
# RFC 6750's b64token, plus '.' separated JWT segments: no spaces, no line breaks.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class Client:
    """A client of one nodecert service.

    Args:
        base_url: The service, ``http://`` or ``https://`` (a path prefix is kept, for a
            service mounted under one, e.g. an API Gateway stage).
        token: The bearer token (OIDC / dev issuer) for the routes that need one.
        timeout: Seconds to wait for each network operation (connect, each read).
        cafile: A PEM bundle to trust for ``https://`` (default: the system store).
        transport: How to send requests (default :class:`UrllibTransport`); tests pass
            :class:`nodecert.testing.MockTransport`.

    Every method raises the error the service answered with, rebuilt from the wire-error
    table (:class:`~nodecert.core.errors.NotFoundError` for a 404 ``not_found``, and so on;
    docs/errors.md), or :class:`~nodecert.client.ServiceUnreachableError` when no answer came.

    Raises:
        InvalidRequestError: ``base_url`` is not an http(s) URL, or ``timeout`` is not positive.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        cafile: Path | str | None = None,
        transport: Transport | None = None,
    ) -> None:
        try:
            parts = urlsplit(base_url)
            parts.port  # noqa: B018  (Parsing the port is what checks it.)
        except ValueError:
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidRequestError(
                f"server: {base_url[:100]!r} must be an http:// or https:// URL"
            )
        if "@" in parts.netloc:  # Never echoed: it may hold a password.
            raise InvalidRequestError("server: a user name or password in the URL is not supported")
        if parts.query or parts.fragment:
            raise InvalidRequestError(f"server: {base_url[:100]!r} has a query or fragment")
        if not timeout > 0:
            raise InvalidRequestError(f"timeout: {timeout!r} must be a positive number")
        if token is not None and not _TOKEN.fullmatch(token):
            # Never echo it: a mistyped token is still a secret.
            raise InvalidRequestError("token: empty, or has characters a bearer token cannot")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self._token = token
        self._transport = transport if transport is not None else UrllibTransport(cafile=cafile)

    def __repr__(self) -> str:
        return f"Client({self.base_url!r}, timeout={self.timeout:g})"

    # Certificates

    def issue(
        self,
        node_id: str,
        *,
        key_type: str | None = None,
        csr: str | None = None,
        validity_days: int | None = None,
        idempotency_key: str | None = None,
    ) -> IssuedCertificate:
        """``POST /generate-cert``: a certificate for one of the caller's nodes.

        Without ``csr`` the service generates the key and returns it in ``private_key``;
        with a PEM ``csr`` the key stays with the caller. ``idempotency_key`` makes a
        retried request answer with the same certificate.
        """
        body: dict[str, Any] = {"nodeId": node_id}
        if key_type is not None:
            body["keyType"] = key_type
        if csr is not None:
            body["csr"] = csr
        if validity_days is not None:
            body["validityDays"] = validity_days
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return issued_from(self._json("POST", "/generate-cert", body, headers=headers))

    def certificates(
        self, *, node_id: str | None = None, status: str | None = None
    ) -> Iterator[CertificateInfo]:
        """``GET /v1/certificates``: the caller's certificates, newest first, every page."""
        cursor: str | None = None
        while True:
            query: dict[str, str] = {"limit": str(_PAGE)}
            if node_id is not None:
                query["nodeId"] = node_id
            if status is not None:
                query["status"] = status
            if cursor is not None:
                query["cursor"] = cursor
            page = self._json("GET", "/v1/certificates?" + urlencode(query))
            yield from list_of(page, "certificates", certificate_from)
            following = page.get("nextCursor")
            if not isinstance(following, str) or not following or following == cursor:
                return
            cursor = following

    def audit(
        self,
        *,
        user: str | None = None,
        node: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, str]]:
        """``GET /v1/audit``: audit entries, newest first (admins: all; users: their own).

        Each entry is the wire object: ``at``, ``actor``, ``action``, ``target``,
        ``userId``, ``nodeId``, ``source``, ``detail``, all strings.
        """
        given = {"user": user, "node": node, "action": action, "since": since, "until": until}
        query = {k: v for k, v in given.items() if v is not None}
        query["limit"] = str(limit)
        return list_of(self._json("GET", "/v1/audit?" + urlencode(query)), "entries", audit_from)

    def certificate(self, serial: str) -> CertificateInfo:
        """``GET /v1/certificates/{serial}``."""
        return certificate_from(self._json("GET", f"/v1/certificates/{_segment(serial)}"))

    def revoke(self, serial: str, *, reason: str = "unspecified") -> CertificateInfo:
        """``POST /v1/certificates/{serial}/revoke``: revoke one certificate."""
        path = f"/v1/certificates/{_segment(serial)}/revoke"
        return certificate_from(self._json("POST", path, {"reason": reason}))

    def revoke_all(
        self,
        *,
        node_id: str | None = None,
        user_id: str | None = None,
        reason: str = "unspecified",
    ) -> list[CertificateInfo]:
        """Revoke every active certificate of a node or of a user (exactly one of the two).

        Raises:
            InvalidRequestError: neither or both of ``node_id`` and ``user_id``.
        """
        if (node_id is None) == (user_id is None):
            raise InvalidRequestError("revoke_all: give exactly one of node_id and user_id")
        if node_id is not None:
            path = f"/v1/nodes/{_segment(node_id)}/revoke-all"
        else:
            path = f"/v1/users/{_segment(str(user_id))}/revoke-all"
        return list_of(self._json("POST", path, {"reason": reason}), "revoked", certificate_from)

    def renew(
        self,
        certificate: x509.Certificate,
        key: PrivateKey,
        *,
        audience: str | None = None,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """``POST /v1/renew``: a successor for ``certificate``, proven with its own ``key``.

        A fresh key of the same type is made here and only its CSR is sent; the request
        is authorized by a short proof-of-possession token signed with ``key`` (no bearer
        token needed). The new key is in the result's ``private_key``.

        Raises:
            InvalidRequestError: ``key`` does not belong to ``certificate``, or the
                certificate carries no nodecert identity.
            UnexpectedReplyError: the service certified another key.
        """
        from nodecert.core.tokens import mint_renewal_token, renewal_audience

        if key.public_key() != certificate.public_key():
            raise InvalidRequestError("renew: the key does not belong to the certificate")
        identity = Identity.from_certificate(certificate)
        trust_domain = _trust_domain(certificate)
        new_key = generate_private_key(key_type_of(certificate.public_key()))
        organizations = certificate.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
        organization = str(organizations[0].value) if organizations else "nodecert"
        csr = build_csr(new_key, identity, organization=organization, trust_domain=trust_domain)
        token = mint_renewal_token(
            certificate, key, audience=audience or renewal_audience(trust_domain), now=now
        )
        body = {"csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii")}
        data = self._json("POST", "/v1/renew", body, bearer=token)
        issued = issued_from(data, private_key=private_key_pem(new_key))
        try:
            renewed = x509.load_pem_x509_certificate(issued.certificate.encode())
        except ValueError:
            raise UnexpectedReplyError("renew: the reply's certificate is not PEM") from None
        if renewed.public_key() != new_key.public_key():
            raise UnexpectedReplyError("renew: the service certified another key")
        return issued

    # The CA

    def ca_chain(self) -> str:
        """``GET /v1/ca``: the CA chain (PEM), for trust stores. No token needed."""
        return self._send("GET", "/v1/ca", authenticated=False).body.decode("ascii", "replace")

    def ca_roots(self) -> str:
        """``GET /v1/ca/roots``: the root certificate(s) alone (PEM). No token needed."""
        return self._send("GET", "/v1/ca/roots", authenticated=False).body.decode(
            "ascii", "replace"
        )

    def ca_issuers(self) -> list[CAIssuer]:
        """``GET /v1/ca/issuers``: the service's CA certificates and their state. No token.

        Raises:
            NotFoundError: a service older than this route.
        """
        data = self._json("GET", "/v1/ca/issuers", authenticated=False)
        return list_of(data, "issuers", issuer_from)

    def crl(self, *, issuer: str | None = None) -> x509.CertificateRevocationList:
        """``GET /v1/crl``: the local CA's current CRL, or with ``issuer`` (a key id, hex)
        the CRL of that issuing CA (one retiring after a rotation). No token needed.

        Raises:
            NotFoundError: the CA backend publishes its own CRL (ACM PCA), or (with
                ``issuer``) the service knows no such issuing CA.
        """
        path = "/v1/crl" if issuer is None else "/v1/crl?" + urlencode({"issuer": issuer})
        der = self._send("GET", path, authenticated=False).body
        try:
            return x509.load_der_x509_crl(der)
        except ValueError:
            raise UnexpectedReplyError("crl: the reply is not a DER CRL") from None

    # Nodes

    def nodes(self) -> list[NodeInfo]:
        """``GET /v1/nodes``: every node (admin) or the caller's own."""
        return list_of(self._json("GET", "/v1/nodes"), "nodes", node_from)

    def node(self, node_id: str) -> NodeInfo:
        """``GET /v1/nodes/{nodeId}`` (admin)."""
        return node_from(self._json("GET", f"/v1/nodes/{_segment(node_id)}"))

    def put_node(self, node_id: str, *, owner: str) -> NodeInfo:
        """``PUT /v1/nodes/{nodeId}`` (admin): register a node, or give it a new owner."""
        return node_from(self._json("PUT", f"/v1/nodes/{_segment(node_id)}", {"owner": owner}))

    def delete_node(self, node_id: str) -> None:
        """``DELETE /v1/nodes/{nodeId}`` (admin): remove it, revoking its certificates."""
        self._send("DELETE", f"/v1/nodes/{_segment(node_id)}")

    def assign_node(self, node_id: str, *, owner: str) -> NodeChange:
        """``PUT /v1/nodes/{nodeId}`` (admin), saying what it revoked.

        A new owner is a transfer: every certificate of the node that names the old
        owner is revoked, the node's own (server) certificates included.
        """
        data = self._json("PUT", f"/v1/nodes/{_segment(node_id)}", {"owner": owner})
        return node_change_from(data)

    def remove_node(self, node_id: str) -> NodeChange:
        """``DELETE /v1/nodes/{nodeId}`` (admin), saying what it revoked."""
        return node_change_from(
            self._json("DELETE", f"/v1/nodes/{_segment(node_id)}"), removed=True
        )

    def issue_node_certificate(
        self,
        node_id: str,
        *,
        dns_names: list[str] | None = None,
        key_type: str | None = None,
        csr: str | None = None,
        validity_days: int | None = None,
        idempotency_key: str | None = None,
        ip_addresses: list[str] | None = None,
    ) -> IssuedCertificate:
        """``POST /v1/nodes/{nodeId}/certificate`` (admin): the node's own server certificate,
        for its host names, its IP addresses, or both."""
        body: dict[str, Any] = {}
        if dns_names:
            body["dnsNames"] = list(dns_names)
        if ip_addresses:
            body["ipAddresses"] = list(ip_addresses)
        if key_type is not None:
            body["keyType"] = key_type
        if csr is not None:
            body["csr"] = csr
        if validity_days is not None:
            body["validityDays"] = validity_days
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        path = f"/v1/nodes/{_segment(node_id)}/certificate"
        return issued_from(self._json("POST", path, body, headers=headers))

    # Plumbing

    def _json(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        bearer: str | None = None,
        authenticated: bool = True,
    ) -> Any:
        response = self._send(
            method, path, body, headers=headers, bearer=bearer, authenticated=authenticated
        )
        try:
            return json.loads(response.body)
        except (ValueError, RecursionError):
            raise UnexpectedReplyError(
                f"{method} {path.split('?', 1)[0]}: the reply is not JSON"
            ) from None

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        bearer: str | None = None,
        authenticated: bool = True,
    ) -> Response:
        sent = {"Accept": "application/json, application/problem+json", **(headers or {})}
        token = bearer or (self._token if authenticated else None)
        if authenticated and not token:
            raise AuthenticationError("a token is required (Client(token=...))")
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        request = Request(method, self.base_url + path, sent, data)
        response = self._transport.send(request, timeout=self.timeout)
        if not 200 <= response.status < 300:
            raise error_from_response(response.status, response.headers, response.body)
        return response


def _segment(value: str) -> str:
    # Ids never contain '/', but a hostile or mistyped one must not reach another route.
    return quote(value, safe="")


def _trust_domain(certificate: x509.Certificate) -> str:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        uris: list[str] = []
    else:
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    for uri in uris:
        if uri.startswith("spiffe://"):
            return uri.removeprefix("spiffe://").split("/", 1)[0]
    serial = format_serial(certificate.serial_number)
    raise InvalidRequestError(f"renew: certificate {serial} carries no spiffe:// identity")
