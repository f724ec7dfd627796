"""The service value: every use-case object a front end needs, built once per process.

:mod:`nodecert.bootstrap` builds it from the settings; the front ends (the FastAPI app, the
Lambda handler) receive it and build their routes from it. It lives here, below the
front ends and ``bootstrap`` alike, so that no front end has to import ``bootstrap``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from nodecert.core.config import Settings
from nodecert.core.metrics import NO_METRICS, Metrics
from nodecert.core.ports import TokenVerifier
from nodecert.issuing.administration import Administration
from nodecert.issuing.authority import Authority
from nodecert.issuing.keypool import KeyPool
from nodecert.issuing.renewal import Renewer
from nodecert.nodeside.access import AccessDecider

if TYPE_CHECKING:
    # Only a CA that signs CRLs here (the local CA) has a publisher: bootstrap imports it then.
    from nodecert.issuing.crl import CRLPublisher

__all__ = ["Service", "TokenMinter"]


class TokenMinter(Protocol):
    """An issuer of user tokens for development (the built-in dev issuer)."""

    #: The OAuth client id of ``nodecert login`` (the audience of the tokens it mints).
    client_id: str

    def mint(self, user_id: str, *, admin_group: str | None = None, lifetime_s: int = 3600) -> str:
        """A signed token naming ``user_id`` (in ``admin_group`` when given)."""
        ...

    def mint_code(
        self,
        user_id: str,
        *,
        admin: bool,
        client_id: str,
        redirect_uri: str,
        code_challenge: str,
    ) -> str:
        """An authorization code for the login flow (``nodecert login``)."""
        ...

    def redeem_code(
        self,
        code: str,
        *,
        client_id: str,
        redirect_uri: str,
        code_verifier: str,
        admin_group: str,
    ) -> str:
        """The token for an authorization code, once; raises AuthenticationError."""
        ...


@dataclass(frozen=True, slots=True)
class Service:
    """Everything a front end needs, built once per process.

    Attributes:
        settings: What it was built from.
        authority: Issuing.
        administration: Listings, revocation, the node directory (same collaborators).
        verifier: Checks the callers' Bearer tokens.
        decider: The node-side decision (``/v1/authorize``, renewal).
        renewer: Proof-of-possession renewal.
        crl: The CRL publisher; None when the CA backend publishes its own CRL.
        dev_issuer: The built-in development issuer, when it is on.
        key_pool: Pre-generated RSA keys.
        closers: What :meth:`close` closes, after the key pool (the store).
        metrics: Where counts and timings go (nowhere unless the front end gives a sink).
        metrics_exposition: Renders the metrics for ``GET /metrics`` (None: no such route).
    """

    settings: Settings
    authority: Authority
    administration: Administration
    verifier: TokenVerifier
    decider: AccessDecider
    renewer: Renewer
    crl: CRLPublisher | None
    dev_issuer: TokenMinter | None
    key_pool: KeyPool
    closers: tuple[Callable[[], None], ...] = field(default=(), compare=False)
    metrics: Metrics = field(default=NO_METRICS, compare=False)
    metrics_exposition: Callable[[], bytes] | None = field(default=None, compare=False)
    #: Whether EC issuance may run on the event loop: nothing on its path (the CA, the
    #: ledger write, the token check) ever waits on the network.
    inline_issuance: bool = False

    def close(self) -> None:
        """Stop background work (the key pool's filler), drop pooled keys, close the store."""
        self.key_pool.close()
        for close in self.closers:
            close()
