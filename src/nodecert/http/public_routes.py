"""The routes anyone may call: the CA's certificates, its CRLs, liveness.

They carry no credential and reveal nothing that is not public: what a relying party, a
node building its trust store or a load balancer needs. Which route calls which method
is :data:`nodecert.http.api.ROUTES`.
"""

from __future__ import annotations

import re
from email.utils import format_datetime
from typing import TYPE_CHECKING

from nodecert.core.errors import InvalidRequestError, NotFoundError
from nodecert.core.keys import key_id
from nodecert.http.contract import Reply
from nodecert.issuing.authority import Authority
from nodecert.issuing.issuers import issuer_statuses
from nodecert.issuing.service import Service

if TYPE_CHECKING:
    from nodecert.issuing.crl import CRLPublisher, PublishedCRL

__all__ = ["PublicRoutes"]

_KEY_ID = re.compile(r"(?:[0-9A-Fa-f]{2}){1,64}")


class PublicRoutes:
    """``/v1/ca``, ``/v1/ca/roots``, ``/v1/ca/issuers``, ``/v1/crl`` and ``/healthz``.

    Args:
        authority: Holds the CA whose certificates are served.
        crl: The CRL publisher; None when the CA backend publishes its own CRL.
    """

    def __init__(self, authority: Authority, crl: CRLPublisher | None) -> None:
        self.authority = authority
        self.crl_publisher = crl

    @classmethod
    def for_service(cls, service: Service) -> PublicRoutes:
        """The public routes of ``service``."""
        return cls(service.authority, service.crl)

    def ca(self) -> Reply:
        """``GET /v1/ca``: the CA chain as PEM (issuing CA first, up to the root)."""
        return Reply(200, self.authority.ca_chain_pem(), media_type="application/x-pem-file")

    def ca_roots(self) -> Reply:
        """``GET /v1/ca/roots``: the root certificate(s) alone as PEM, the trust anchors."""
        return Reply(200, self.authority.ca_roots_pem(), media_type="application/x-pem-file")

    def ca_issuers(self) -> Reply:
        """``GET /v1/ca/issuers``: each CA certificate's key id, subject, end and state."""
        return Reply(
            200,
            {
                "issuers": [
                    {
                        "keyId": status.key_id,
                        "subject": status.certificate.subject.rfc4514_string(),
                        "notAfter": status.certificate.not_valid_after_utc.isoformat(),
                        "status": status.state.value,
                    }
                    for status in issuer_statuses(self.authority.ca)
                ]
            },
        )

    def crl(self, if_none_match: str | None = None, issuer: str | None = None) -> Reply:
        """``GET /v1/crl``: the local CA's CRL, DER, with ``ETag`` and ``Last-Modified``.

        ``issuer`` (``?issuer=<key id>``, hex) asks for the CRL of another issuing CA than
        the one in use: one retiring after a rotation (``GET /v1/ca/issuers`` lists them),
        or the root, whose CRL (``nodecert ca root-crl``, signed offline) revokes the
        intermediates retired at once. Answers 304 with no body when ``If-None-Match``
        names the current CRL's tag.

        Raises:
            InvalidRequestError: ``issuer`` is not a key id (1-64 bytes, hex).
            NotFoundError: the CA backend publishes its own CRL (ACM PCA: its S3 bucket),
                or has no issuing CA of that key id (nor a root CRL signed by it).
        """
        if self.crl_publisher is None:
            raise NotFoundError("crl: this CA backend publishes its own CRL")
        if issuer is None:
            published = self.crl_publisher.published()
        elif not _KEY_ID.fullmatch(issuer):
            raise InvalidRequestError("issuer: a key id is 2 to 128 hexadecimal digits")
        else:
            published = self._root_crl(issuer.lower()) or (
                self.crl_publisher.for_issuer(issuer.lower()).published()
            )
        headers = {
            "Cache-Control": "public, max-age=60",
            "ETag": published.etag,
            "Last-Modified": format_datetime(published.this_update, usegmt=True),
            "Expires": format_datetime(published.next_update, usegmt=True),
        }
        if _matches(if_none_match, published.etag):
            return Reply(304, b"", headers, media_type="application/pkix-crl")
        return Reply(200, published.der, headers, media_type="application/pkix-crl")

    def _root_crl(self, issuer: str) -> PublishedCRL | None:
        # Only where this service publishes CRLs (the local CA): not loaded on Lambda.
        from nodecert.issuing.crl import PublishedCRL, RootCRLSource

        ca = self.authority.ca
        if not isinstance(ca, RootCRLSource):
            return None
        chain = ca.chain()  # In memory: the root's file is read only when asked for.
        if len(chain) < 2 or key_id(chain[-1]) != issuer:
            return None
        found = ca.root_crl()
        if found is None or found[0] != issuer:
            raise NotFoundError("crl: no CRL of the root to serve (nodecert ca root-crl signs one)")
        return PublishedCRL.of(found[1])

    @staticmethod
    def healthz() -> Reply:
        """``GET /healthz``: liveness."""
        return Reply(200, {"status": "ok"})


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags
