"""Wiring: the only place that turns :class:`~nodecert.core.config.Settings` into objects.

- this module: the service (:func:`build_service`), the admin commands' administration
  (:func:`build_administration`) and the authorizer's decision (:func:`build_decider`);
- :mod:`nodecert.bootstrap.cas`: the CA backend registry, and the local CA's issuing key in
  AWS KMS or a PKCS#11 token;
- :mod:`nodecert.bootstrap.stores`: the store registry.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

from cryptography import x509

from nodecert.bootstrap.cas import issuing_signer, kms_signer, open_ca
from nodecert.bootstrap.stores import Stores, open_stores
from nodecert.core.config import Settings
from nodecert.core.errors import ConfigurationError
from nodecert.core.keys import KeyType
from nodecert.core.metrics import NO_METRICS, Metrics
from nodecert.core.policy import OwnershipMode, OwnershipPolicy, ValidityPolicy
from nodecert.core.ports import (
    CABackend,
    CRLSigner,
    IssuerSource,
    Ledger,
    NodeDirectory,
)
from nodecert.core.tokens import renewal_audience
from nodecert.issuing.administration import Administration
from nodecert.issuing.authority import Authority
from nodecert.issuing.idempotency import IdempotencyGuard
from nodecert.issuing.keypool import KeyPool
from nodecert.issuing.quota import QuotaPolicy
from nodecert.issuing.renewal import Renewer
from nodecert.issuing.service import Service
from nodecert.nodeside.access import AccessDecider
from nodecert.support.files import secure_home
from nodecert.verifiers.devissuer import DEV_AUDIENCE, DEV_ISSUER, DevIssuer
from nodecert.verifiers.oidc import OIDCVerifier, RemoteJWKS, StaticJWKS

__all__ = [
    "Service",
    "Stores",
    "build_administration",
    "build_decider",
    "build_service",
    "issuing_signer",
    "kms_signer",
    "settings_from_environment",
]

log = logging.getLogger("nodecert")


def settings_from_environment(env: Mapping[str, str] | None = None) -> Settings:
    """Parse the process environment (or ``env``) into Settings."""
    return Settings.from_env(os.environ if env is None else env)


def build_service(
    settings: Settings,
    *,
    event_loop: bool = False,
    metrics: Metrics = NO_METRICS,
    metrics_exposition: Callable[[], bytes] | None = None,
) -> Service:
    """Build the authority, its backends and the token verifier from ``settings``.

    With ``event_loop`` (``nodecert serve``), the issuer's keys are fetched at start and
    refreshed in the background, so that checking a token never waits on the network.
    ``metrics`` is where the use cases count and time (the front end's sink), and
    ``metrics_exposition`` renders them for ``GET /metrics``.

    Raises:
        ConfigurationError: a setting cannot be honoured (for example, a locked CA key,
            or a group- or world-accessible NODECERT_HOME that cannot be tightened).
    """
    if settings.store == "sqlite" or settings.ca == "local" or settings.dev_issuer:
        secure_home(settings.home)
    stores = open_stores(settings)
    dev_issuer = DevIssuer.open_or_create(settings.home) if settings.dev_issuer else None
    ca = open_ca(settings)
    key_pool = KeyPool({kt: settings.key_pool_size for kt in KeyType if kt.is_rsa})
    authority = Authority(
        ca=ca,
        ledger=stores.ledger,
        nodes=stores.nodes,
        ownership=OwnershipPolicy(settings.ownership, stores.nodes, settings.nodes_claim),
        validity=ValidityPolicy(settings.default_validity_days, settings.max_validity_days),
        organization=settings.organization,
        trust_domain=settings.trust_domain,
        keygen=key_pool,
        quota=QuotaPolicy(
            per_minute=settings.quota_per_minute,
            burst=settings.quota_burst,
            max_active=settings.max_active_per_node,
            limiter=stores.limiter,
        ),
        idempotency=IdempotencyGuard(stores.replay, stores.ledger),
        metrics=metrics,
        labels={"ca": settings.ca, "store": settings.store},
        audit=stores.audit,
    )
    administration = Administration(
        ca=ca,
        ledger=stores.ledger,
        nodes=stores.nodes,
        ownership=authority.ownership,
        outbox=stores.outbox,
        audit=stores.audit,
        metrics=metrics,
    )
    if dev_issuer is not None:
        verifier = OIDCVerifier(
            issuer=DEV_ISSUER,
            audience=DEV_AUDIENCE,
            jwks=StaticJWKS(dev_issuer.jwks),
            admin_group=settings.admin_group,
            user_id_claim=settings.user_id_claim,
            admin_claim=settings.admin_claim,
        )
    else:
        if settings.oidc_issuer is None or settings.oidc_audience is None:
            raise ConfigurationError("NODECERT_OIDC_ISSUER and NODECERT_OIDC_AUDIENCE: set both")
        url = settings.oidc_jwks_url or settings.oidc_issuer.rstrip("/") + "/.well-known/jwks.json"
        jwks = RemoteJWKS(url, background=event_loop)
        if event_loop:
            jwks.start()
        verifier = OIDCVerifier(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks=jwks,
            admin_group=settings.admin_group,
            user_id_claim=settings.user_id_claim,
            admin_claim=settings.admin_claim,
        )
    decider = _decider(
        settings,
        ca.chain,
        stores.ledger,
        stores.nodes,
        ca if isinstance(ca, IssuerSource) else None,
    )
    renewer = Renewer(
        authority=authority,
        decider=decider,
        replay=stores.replay,
        audience=settings.renew_audience or renewal_audience(settings.trust_domain),
        grace=timedelta(seconds=settings.renew_grace_s),
    )
    crl = None
    if isinstance(ca, CRLSigner):
        # Imported for a CA that signs CRLs here (the local CA) only: ACM PCA publishes its
        # own, and a Lambda function need not load the CRL modules (its cold start).
        from nodecert.issuing.crl import CRLPublisher

        crl = CRLPublisher(
            ledger=stores.ledger, signer=ca, lifetime=timedelta(seconds=settings.crl_lifetime_s)
        )
    return Service(
        settings=settings,
        authority=authority,
        administration=administration,
        verifier=verifier,
        decider=decider,
        renewer=renewer,
        crl=crl,
        dev_issuer=dev_issuer,
        key_pool=key_pool,
        closers=stores.closers,
        inline_issuance=_never_waits_on_network(ca, stores.ledger, verifier),
        metrics=metrics,
        metrics_exposition=metrics_exposition,
    )


def build_administration(settings: Settings) -> tuple[Administration, Callable[[], None]]:
    """The node directory and revocations alone (the CLI's admin commands on the store).

    Nothing here signs, so the local CA key is never read and its passphrase never needed:
    a revocation only counts at the local CA (:class:`LocalCARevocations`). ACM PCA is
    called as the service calls it. Returns the administration and what closes its store.

    Raises:
        ConfigurationError: a setting cannot be honoured.
        StoreUnavailableError: the database cannot be opened or reached.
    """
    if settings.store == "sqlite" or settings.ca == "local":
        secure_home(settings.home)
    stores = open_stores(settings)
    ca: CABackend
    if settings.ca == "local":
        from nodecert.backends.local.revocations import LocalCARevocations

        ca = LocalCARevocations(settings.home / "ca")
    else:
        ca = open_ca(settings)
    administration = Administration(
        ca=ca,
        ledger=stores.ledger,
        nodes=stores.nodes,
        ownership=OwnershipPolicy(settings.ownership, stores.nodes, settings.nodes_claim),
        outbox=stores.outbox,
        audit=stores.audit,
    )

    def close() -> None:
        for closer in stores.closers:
            closer()

    return administration, close


def _never_waits_on_network(ca: CABackend, store: Ledger, verifier: OIDCVerifier) -> bool:
    # Decided from what the parts are, not from setting strings: the local CA signs in
    # process, SQLite is a local file whose ledger writes are deferred to a committer
    # thread, and a token check waits on the issuer only with a JWKS refreshed inline.
    return ca.never_waits and store.never_waits and not verifier.may_block


def build_decider(settings: Settings) -> AccessDecider:
    """The node-side decision alone (for the API Gateway authorizer Lambda).

    It needs the store and the CA certificates only: no token verifier, no dev issuer,
    nothing written to disk, and never a CA of its own. The certificates come from
    ``NODECERT_CA_BUNDLE`` (the CA is never contacted), from ACM PCA
    (``NODECERT_CA=acmpca`` and ``NODECERT_ACMPCA_CA_ARN``, with the CAs of
    ``NODECERT_ACMPCA_RETIRING_ARNS`` and ``_RETIRED_ARNS``), or from the local CA's
    certificate ``<home>/ca/ca.crt`` when that CA already exists (its key is not read).

    Raises:
        ConfigurationError: a setting cannot be honoured, or no CA is configured.
    """
    if settings.ca_bundle:
        if settings.acmpca_retired_arns:
            # A bundle is certificates alone: a retired CA in it would be trusted like the
            # others, its certificates let in although the operator refused them.
            raise ConfigurationError(
                "NODECERT_CA_BUNDLE cannot be used with NODECERT_ACMPCA_RETIRED_ARNS: a"
                " bundle does not say which CA is retired. Unset NODECERT_CA_BUNDLE, so"
                " that the CAs are read from ACM PCA by their ARNs"
            )
        stores = open_stores(settings)
        return _decider(settings, tuple, stores.ledger, stores.nodes)
    if settings.ca == "local":
        certificate = settings.home / "ca" / "ca.crt"
        if not certificate.is_file():
            raise ConfigurationError(
                "authorizer: no CA to check client certificates against. Set"
                " NODECERT_CA_BUNDLE to a PEM file of the CA chain, or NODECERT_CA=acmpca"
                f" with NODECERT_ACMPCA_CA_ARN ({certificate} does not exist either; the"
                " node-side check never creates a CA)"
            )
        from nodecert.backends.local.home import HomeIssuers

        # The issuing CAs and roots, followed through rotations; never a key.
        issuers = HomeIssuers(settings.home / "ca")
        stores = open_stores(settings)
        return _decider(settings, tuple, stores.ledger, stores.nodes, issuers)
    stores = open_stores(settings)
    ca = open_ca(settings)
    # ACM PCA names its issuing, retiring and retired CAs (a rotation's overlap).
    issuer_source = ca if isinstance(ca, IssuerSource) else None
    return _decider(settings, ca.chain, stores.ledger, stores.nodes, issuer_source)


def _decider(
    settings: Settings,
    chain_source: Callable[[], Sequence[x509.Certificate]],
    ledger: Ledger,
    nodes: NodeDirectory,
    issuers: IssuerSource | None = None,
) -> AccessDecider:
    # Only the registry policy keeps a node directory to check ownership against.
    check_owner = settings.ownership is OwnershipMode.REGISTRY
    if settings.ca_bundle is not None:
        try:
            chain = x509.load_pem_x509_certificates(settings.ca_bundle.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"NODECERT_CA_BUNDLE: cannot read certificates from {settings.ca_bundle}"
            ) from exc
        # A bundle lists trust anchors; every self-signed one is a root.
        roots = [c for c in chain if c.issuer == c.subject]
        return AccessDecider(
            trust_anchors=roots or list(chain),
            intermediates=[c for c in chain if c.issuer != c.subject],
            ledger=ledger,
            nodes=nodes,
            trust_domain=settings.trust_domain,
            check_owner=check_owner,
        )
    if issuers is not None:
        # A CA that rotates: every decision asks it which issuing CAs hold now.
        return AccessDecider(
            trust_anchors=(),
            ledger=ledger,
            nodes=nodes,
            trust_domain=settings.trust_domain,
            check_owner=check_owner,
            issuer_source=issuers.issuer_set,
        )
    return AccessDecider.from_chain_source(
        chain_source,
        ledger=ledger,
        nodes=nodes,
        trust_domain=settings.trust_domain,
        check_owner=check_owner,
    )
