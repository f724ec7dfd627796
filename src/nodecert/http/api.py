"""Every route of the HTTP API, declared once: :data:`ROUTES`.

A row says the method, the path template (in API Gateway's notation, ``{nodeId}``), who
may call it, the use case it calls, where that runs, and the request and reply models
that describe it. Everything else iterates the table:

- the FastAPI app (:mod:`nodecert.http.app`) registers one route per row, and answers the
  rows that run :attr:`Runs.DIRECT` ahead of its own stack;
- ``/openapi.json`` and ``/docs`` describe the rows (models, statuses, summaries);
- the Lambda handler (:mod:`nodecert.aws.handler`) dispatches on the rows
  :attr:`Route.on_lambda`;
- the tests hold deploy/template.yaml's API, and the client's calls, to the table.

Adding a route is one row here and one method on the class of its role:
:class:`~nodecert.http.routes.Routes` (users and admins),
:class:`~nodecert.http.public_routes.PublicRoutes` (anyone) or
:class:`~nodecert.http.nodeside_routes.NodeSideRoutes` (nodes and their proxies).

Models are named, not imported: they are pydantic models in :mod:`nodecert.http.schemas`,
and the Lambda package carries no pydantic (only the FastAPI app reads them).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nodecert.core.errors import NotFoundError
from nodecert.http.call import Call
from nodecert.http.contract import Reply
from nodecert.http.nodeside_routes import NodeSideRoutes
from nodecert.http.public_routes import PublicRoutes
from nodecert.http.routes import Issuance, Routes
from nodecert.issuing.service import Service

__all__ = ["ROUTES", "Access", "Handlers", "Route", "Runs"]

_PARAMETER = re.compile(r"\{(\w+)\}")


class Access(enum.StrEnum):
    """Who may call a route, and so what the front end checks before the use case runs."""

    ANYONE = "anyone"
    """No credential: what is public anyway (the CA's certificates, CRLs, liveness)."""
    USER = "user"
    """An OIDC identity (a Bearer token, or an API Gateway authorizer's claims); the use
    case limits a user to what is theirs, an admin to nothing."""
    ADMIN = "admin"
    """The same identity; the use case refuses anyone but an admin (403)."""
    NODE = "node"
    """The node itself: a proof-of-possession JWT that the certificate being renewed
    signed, checked by the use case (API Gateway lets it through without authorizer)."""
    PROXY = "proxy"
    """The node's reverse proxy: the shared secret, or a loopback peer (never on AWS,
    where the authorizer Lambda plays that role)."""

    @property
    def authenticated(self) -> bool:
        """Whether the front end authenticates the caller (an OIDC identity)."""
        return self in (Access.USER, Access.ADMIN)


class Runs(enum.StrEnum):
    """Where the FastAPI app runs a route's use case (Lambda runs everything in line)."""

    POOL = "pool"
    """In the thread pool: it may wait (the ledger, a remote CA, the issuer's keys)."""
    LOOP = "loop"
    """On the event loop: it reads memory only."""
    DIRECT = "direct"
    """Ahead of FastAPI's stack (:class:`~nodecert.http.direct.NodecertAPI`): the call
    returns an :class:`~nodecert.http.routes.Issuance`, signed on the event loop when it
    never waits, whose ledger commit is awaited there (docs/performance.md)."""


@dataclass(frozen=True, slots=True)
class Handlers:
    """The route classes of one service, one per role.

    Args:
        user: Users' and admins' routes.
        public: The routes anyone may call.
        node: The routes of nodes and their proxies; None where the deployment has none
            (they answer 404 then).
    """

    user: Routes
    public: PublicRoutes
    node: NodeSideRoutes | None = None

    @classmethod
    def for_service(cls, service: Service) -> Handlers:
        """Every route class of ``service``."""
        return cls(
            Routes.for_service(service),
            PublicRoutes.for_service(service),
            NodeSideRoutes.for_service(service),
        )

    def node_side(self, route: str) -> NodeSideRoutes:
        """The node-side routes.

        Raises:
            NotFoundError: this deployment has none.
        """
        if self.node is None:
            raise NotFoundError(f"{route}: not available in this deployment")
        return self.node


Answer = Callable[[Handlers, Call], "Reply | Issuance"]


@dataclass(frozen=True, slots=True)
class Route:
    """One route: what it is, who may call it, what it calls, how it is described.

    Attributes:
        method: The HTTP method.
        path: The path template (``/v1/nodes/{nodeId}``).
        access: Who may call it.
        call: The use case: from the route classes and the call, the reply (or, for
            :attr:`Runs.DIRECT`, the issuance to run).
        name: The operation's name (its ``operationId`` in ``/openapi.json``).
        summary: One line for the API's documentation.
        status: The status of a success.
        body: The request body's model in :mod:`nodecert.http.schemas`, if documented.
        body_required: Whether a body must be sent.
        reply: The reply's model in :mod:`nodecert.http.schemas`, if JSON and documented.
        media_type: The reply's media type, when it is not JSON.
        errors: The statuses of the problem documents it may answer.
        notes: Other statuses it may answer, with what they mean.
        query: The query parameters it reads.
        headers: The headers it reads that may appear only once (refused when repeated,
            before anything runs).
        runs: Where the FastAPI app runs it.
        on_lambda: Whether the Lambda handler (and so the template's API) serves it.
        issues: Whether it signs a certificate (on AWS: the issuing function serves it).
    """

    method: str
    path: str
    access: Access
    call: Answer
    name: str
    summary: str
    status: int = 200
    body: str | None = None
    body_required: bool = True
    reply: str | None = None
    media_type: str | None = None
    errors: tuple[int, ...] = ()
    notes: Mapping[int, str] | None = None
    query: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    runs: Runs = Runs.POOL
    on_lambda: bool = True
    issues: bool = False

    @property
    def key(self) -> str:
        """The API Gateway route key (``"GET /v1/nodes/{nodeId}"``)."""
        return f"{self.method} {self.path}"

    @property
    def parameters(self) -> tuple[str, ...]:
        """The path template's parameters, in order."""
        return tuple(_PARAMETER.findall(self.path))

    @property
    def reads_body(self) -> bool:
        """Whether the route reads a request body."""
        return self.method in ("POST", "PUT")


_PEM = "application/x-pem-file"
_ISSUE = "IssuedCertificate"
_IDEMPOTENCY = ("Idempotency-Key",)

# One row per route; the table reads best unwrapped.
# fmt: off
ROUTES: tuple[Route, ...] = (
    Route(
        "POST", "/generate-cert", Access.USER,
        lambda h, c: h.user.generate_cert(
            c.principal, c.body, idempotency_key=c.header("Idempotency-Key")
        ),
        "generate_cert", "Issue a certificate for one of your nodes",
        status=201, body="GenerateCertRequest", reply=_ISSUE,
        errors=(400, 401, 403, 413, 429, 503), headers=_IDEMPOTENCY,
        runs=Runs.DIRECT, issues=True,
    ),
    Route(
        "GET", "/v1/certificates", Access.USER,
        lambda h, c: h.user.list_certificates(
            c.principal, node_id=c.query.get("nodeId"), status=c.query.get("status"),
            limit=c.query.get("limit"), cursor=c.query.get("cursor"),
        ),
        "list_certificates", "List your certificates",
        reply="CertificateList", errors=(400, 401), query=("nodeId", "status", "limit", "cursor"),
    ),
    Route(
        "GET", "/v1/certificates/{serial}", Access.USER,
        lambda h, c: h.user.get_certificate(c.principal, c.params["serial"]),
        "get_certificate", "One of your certificates",
        reply="Certificate", errors=(400, 401, 404),
    ),
    Route(
        "POST", "/v1/certificates/{serial}/revoke", Access.USER,
        lambda h, c: h.user.revoke(c.principal, c.params["serial"], c.body),
        "revoke", "Revoke a certificate (owner or admin)",
        body="RevokeRequest", body_required=False, reply="Certificate",
        errors=(400, 401, 404, 413, 503),
    ),
    Route(
        "GET", "/v1/nodes", Access.USER,
        lambda h, c: h.user.list_nodes(c.principal),
        "list_nodes", "List nodes",
        reply="NodeList", errors=(401,),
    ),
    Route(
        "PUT", "/v1/nodes/{nodeId}", Access.ADMIN,
        lambda h, c: h.user.put_node(c.principal, c.params["nodeId"], c.body),
        "put_node", "Create or transfer a node (admin); says how many certificates it revoked",
        body="NodeBody", reply="NodeChange", errors=(400, 401, 403, 413),
    ),
    Route(
        "POST", "/v1/nodes/{nodeId}/certificate", Access.ADMIN,
        lambda h, c: h.user.issue_node_certificate(
            c.principal, c.params["nodeId"], c.body, idempotency_key=c.header("Idempotency-Key")
        ),
        "node_certificate", "Issue a node's own server (and client) certificate (admin)",
        status=201, body="NodeCertificateRequest", reply=_ISSUE,
        errors=(400, 401, 403, 404, 413, 503), headers=_IDEMPOTENCY, issues=True,
    ),
    Route(
        "GET", "/v1/nodes/{nodeId}", Access.ADMIN,
        lambda h, c: h.user.get_node(c.principal, c.params["nodeId"]),
        "get_node", "One node (admin)",
        reply="Node", errors=(400, 401, 403, 404),
    ),
    Route(
        "DELETE", "/v1/nodes/{nodeId}", Access.ADMIN,
        lambda h, c: h.user.delete_node(c.principal, c.params["nodeId"]),
        "delete_node", "Delete a node and revoke its certificates (admin); names the node's own",
        reply="NodeRemoval", errors=(400, 401, 403, 404),
    ),
    Route(
        "GET", "/v1/ca", Access.ANYONE,
        lambda h, c: h.public.ca(),
        "ca", "The CA chain (PEM): the issuing CA first, up to and including the root",
        media_type=_PEM, runs=Runs.LOOP,
    ),
    Route(
        "GET", "/v1/ca/roots", Access.ANYONE,
        lambda h, c: h.public.ca_roots(),
        "ca_roots", "The root CA certificate(s) alone (PEM): the trust anchors for trust stores",
        media_type=_PEM, runs=Runs.LOOP,
    ),
    Route(
        "GET", "/v1/ca/issuers", Access.ANYONE,
        lambda h, c: h.public.ca_issuers(),
        "ca_issuers", "Each CA certificate's key id and state: active, retiring, retired, root",
        # On Lambda too: renewal agents ask it whether their issuer is retiring (ACM PCA
        # rotation).
        runs=Runs.LOOP,
    ),
    Route(
        "GET", "/v1/audit", Access.USER,
        lambda h, c: h.user.audit(
            c.principal, user=c.query.get("user"), node=c.query.get("node"),
            action=c.query.get("action"), since=c.query.get("since"),
            until=c.query.get("until"), limit=c.query.get("limit"),
        ),
        "audit", "The audit trail: issuance, renewal, revocation, admin actions",
        reply="AuditList", errors=(400, 401, 403),
        query=("user", "node", "action", "since", "until", "limit"),
    ),
    Route(
        "GET", "/healthz", Access.ANYONE,
        lambda h, c: h.public.healthz(),
        "healthz", "Liveness",
        runs=Runs.LOOP,
    ),
    # The nginx-side decision has no place behind API Gateway: the authorizer Lambda
    # decides there (docs/aws.md).
    Route(
        "POST", "/v1/authorize", Access.PROXY,
        lambda h, c: h.node_side("authorize").authorize(c),
        "authorize", "Node-side decision for a reverse proxy (nginx auth_request)",
        errors=(400, 401, 403), on_lambda=False,
    ),
    Route(
        "POST", "/v1/renew", Access.NODE,
        lambda h, c: h.node_side("renew").renew(c.header("Authorization"), c.body),
        "renew", "Renew a certificate with a proof-of-possession token",
        status=201, errors=(400, 401, 403, 503), headers=("Authorization",), issues=True,
    ),
    # ACM PCA publishes its own CRL (to S3): on AWS there is no local one to serve.
    Route(
        "GET", "/v1/crl", Access.ANYONE,
        lambda h, c: h.public.crl(c.first("If-None-Match"), c.query.get("issuer")),
        "crl", "The local CA's CRL (DER); ?issuer=<key id>: a retiring issuing CA's, the root's",
        media_type="application/pkix-crl", errors=(400, 404), query=("issuer",),
        notes={304: "Not modified: If-None-Match names the current CRL"}, on_lambda=False,
    ),
    Route(
        "POST", "/v1/nodes/{nodeId}/revoke-all", Access.USER,
        lambda h, c: h.user.revoke_all(c.principal, c.body, node_id=c.params["nodeId"]),
        "revoke_node", "Revoke every certificate of a node (owner or admin)",
        errors=(400, 401, 403),
    ),
    Route(
        "POST", "/v1/users/{userId}/revoke-all", Access.USER,
        lambda h, c: h.user.revoke_all(c.principal, c.body, user_id=c.params["userId"]),
        "revoke_user", "Revoke every certificate of a user (that user or admin)",
        errors=(400, 401, 403),
    ),
)
# fmt: on
"""Every route, in the order ``/openapi.json`` lists them."""
