"""Wiring: the only place that turns :class:`~nodecert.core.config.Settings` into objects."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from cryptography import x509

from nodecert.backends.local.ca import LocalCA
from nodecert.backends.local.home import HomeIssuers
from nodecert.backends.signers.external import ExternalSigner
from nodecert.core.choices import CAKind, StoreKind
from nodecert.core.config import Settings
from nodecert.core.errors import ConfigurationError
from nodecert.core.keys import KeyType
from nodecert.core.metrics import NO_METRICS, Metrics
from nodecert.core.policy import OwnershipMode, OwnershipPolicy, ValidityPolicy
from nodecert.core.ports import (
    AuditTrail,
    CABackend,
    CRLSigner,
    IssuerSource,
    Ledger,
    NodeDirectory,
    RateLimiter,
    ReplayGuard,
    RevocationOutbox,
)
from nodecert.core.tokens import renewal_audience
from nodecert.issuing.administration import Administration
from nodecert.issuing.authority import Authority
from nodecert.issuing.crl import CRLPublisher
from nodecert.issuing.idempotency import IdempotencyGuard
from nodecert.issuing.keypool import KeyPool
from nodecert.issuing.quota import QuotaPolicy
from nodecert.issuing.renewal import Renewer
from nodecert.issuing.service import Service
from nodecert.nodeside.access import AccessDecider
from nodecert.store.sqlite.store import SQLiteStore
from nodecert.support.files import secure_home
from nodecert.verifiers.devissuer import DEV_AUDIENCE, DEV_ISSUER, DevIssuer
from nodecert.verifiers.oidc import OIDCVerifier, RemoteJWKS, StaticJWKS

if TYPE_CHECKING:
    from nodecert.store.dynamodb.store import DynamoDBStore

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


@dataclass(frozen=True, slots=True)
class Stores:
    """What one store setting gives: every store port, and what closes them.

    SQLite and PostgreSQL are one object in every role; DynamoDB keeps single-use tokens,
    rate buckets and the audit trail in a limits table, and the revocation outbox in a
    table of its own, through objects of their own over the same client.

    Attributes:
        ledger: The certificate ledger.
        nodes: The node directory.
        replay: Single-use token ids (proof-of-possession renewal, idempotency keys).
        limiter: Token buckets (the issuance rate).
        outbox: The queue of CA revocations.
        audit: The audit trail of administrative actions.
        closers: What ``Service.close`` must call: only a PostgreSQL pool holds server
            connections and threads of its own (SQLite's connections belong to the
            threads that opened them, DynamoDB's client to boto3).
    """

    ledger: Ledger
    nodes: NodeDirectory
    replay: ReplayGuard
    limiter: RateLimiter
    outbox: RevocationOutbox
    audit: AuditTrail
    closers: tuple[Callable[[], None], ...] = ()


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
    stores = _stores(settings)
    dev_issuer = DevIssuer.open_or_create(settings.home) if settings.dev_issuer else None
    ca = _ca(settings)
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
    crl = (
        CRLPublisher(
            ledger=stores.ledger, signer=ca, lifetime=timedelta(seconds=settings.crl_lifetime_s)
        )
        if isinstance(ca, CRLSigner)
        else None
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
    stores = _stores(settings)
    ca: CABackend
    if settings.ca == "local":
        from nodecert.backends.local.revocations import LocalCARevocations

        ca = LocalCARevocations(settings.home / "ca")
    else:
        ca = _ca(settings)
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
    (``NODECERT_CA=acmpca`` and ``NODECERT_ACMPCA_CA_ARN``), or from the local CA's
    certificate ``<home>/ca/ca.crt`` when that CA already exists (its key is not read).

    Raises:
        ConfigurationError: a setting cannot be honoured, or no CA is configured.
    """
    if settings.ca_bundle:
        stores = _stores(settings)
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
        # The issuing CAs and roots, followed through rotations; never a key.
        issuers = HomeIssuers(settings.home / "ca")
        stores = _stores(settings)
        return _decider(settings, tuple, stores.ledger, stores.nodes, issuers)
    stores = _stores(settings)
    return _decider(settings, _ca(settings).chain, stores.ledger, stores.nodes)


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


def _stores(settings: Settings) -> Stores:
    """Every store port, from ``settings.store``.

    Raises:
        ConfigurationError: the store is unknown or its settings are incomplete.
        StoreUnavailableError: the database cannot be opened or reached.
    """
    return _STORES[settings.store](settings)


def _sqlite_stores(settings: Settings) -> Stores:
    store = SQLiteStore(settings.database_path, synchronous=settings.sqlite_synchronous)
    return Stores(store, store, store, store, store, store)


def _postgres_stores(settings: Settings) -> Stores:
    if not settings.database_url:
        raise ConfigurationError("NODECERT_DATABASE_URL: required when NODECERT_STORE=postgres")
    # Imported here: psycopg is an extra (nodecert[postgres]), like boto3 for DynamoDB.
    try:
        from nodecert.store.postgres.store import PostgresStore
    except ImportError as exc:
        raise ConfigurationError(
            "NODECERT_STORE=postgres: psycopg is not installed (pip install 'nodecert[postgres]')"
        ) from exc
    pg = PostgresStore(settings.database_url, max_size=settings.database_pool_size)
    return Stores(pg, pg, pg, pg, pg, pg, closers=(pg.close,))


def _dynamodb_stores(settings: Settings) -> Stores:
    from nodecert.store.dynamodb.limits import DynamoDBLimits
    from nodecert.store.dynamodb.outbox import DynamoDBOutbox
    from nodecert.store.dynamodb.store import DynamoDBStore
    from nodecert.support.awsclients import make_client

    client = make_client("dynamodb", region=settings.aws_region)
    dynamodb: DynamoDBStore = DynamoDBStore(
        client,
        nodes_table=settings.dynamodb_nodes_table,
        certificates_table=settings.dynamodb_certificates_table,
    )
    limits = DynamoDBLimits(client, table=settings.dynamodb_limits_table)
    outbox = DynamoDBOutbox(
        client,
        certificates_table=settings.dynamodb_certificates_table,
        outbox_table=settings.dynamodb_outbox_table,
        limits_table=settings.dynamodb_limits_table,
    )
    return Stores(dynamodb, dynamodb, limits, limits, outbox, outbox)


def issuing_signer(settings: Settings, *, create: bool = False) -> ExternalSigner | None:
    """The local CA's issuing key outside any file (AWS KMS, PKCS#11), or None for a file.

    ``create`` (``nodecert ca init``) generates the PKCS#11 key pair when the token has
    none of the label.

    Raises:
        ConfigurationError: both are set, a setting is missing, or the key cannot be used.
    """
    if settings.ca_pkcs11_module is None:
        return None if settings.ca_kms_key_id is None else kms_signer(settings)
    if settings.ca_kms_key_id is not None:
        raise ConfigurationError(
            "NODECERT_CA_PKCS11_MODULE and NODECERT_CA_KMS_KEY_ID: one issuing key, not two"
        )
    if not settings.ca_pkcs11_token:
        raise ConfigurationError("NODECERT_CA_PKCS11_TOKEN: required with the module")
    if (settings.ca_pkcs11_pin is None) == (settings.ca_pkcs11_pin_file is None):
        raise ConfigurationError(
            "NODECERT_CA_PKCS11_PIN or NODECERT_CA_PKCS11_PIN_FILE: set exactly one"
        )
    pin = settings.ca_pkcs11_pin
    if settings.ca_pkcs11_pin_file is not None:
        try:
            pin = settings.ca_pkcs11_pin_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"NODECERT_CA_PKCS11_PIN_FILE: cannot read {settings.ca_pkcs11_pin_file}"
            ) from exc
    try:
        from nodecert.backends.signers.pkcs11 import PKCS11Signer
    except ImportError as exc:
        raise ConfigurationError(
            "NODECERT_CA_PKCS11_MODULE: python-pkcs11 is not installed"
            " (pip install 'nodecert[pkcs11]')"
        ) from exc
    return PKCS11Signer(
        settings.ca_pkcs11_module,
        settings.ca_pkcs11_token,
        settings.ca_pkcs11_key_label,
        pin or "",
        create=settings.ca_key_type if create else None,
    )


def kms_signer(settings: Settings) -> ExternalSigner:
    """The local CA's issuing key in AWS KMS (``NODECERT_CA_KMS_KEY_ID``).

    Raises:
        ConfigurationError: boto3 is missing, or the key cannot be used (see ``KMSSigner``).
    """
    if settings.ca_kms_key_id is None:
        raise ConfigurationError("NODECERT_CA_KMS_KEY_ID: not set")
    try:
        from nodecert.backends.signers.kms import KMSSigner
        from nodecert.support.awsclients import make_client

        client = make_client("kms", region=settings.aws_region, max_attempts=2)
    except ImportError as exc:
        raise ConfigurationError(
            "NODECERT_CA_KMS_KEY_ID: boto3 is not installed (pip install 'nodecert[aws]')"
        ) from exc
    return KMSSigner(client, settings.ca_kms_key_id)


def _ca(settings: Settings) -> CABackend:
    return _CA_BACKENDS[settings.ca](settings)


def _local_ca(settings: Settings) -> CABackend:
    return LocalCA.open_or_create(
        settings.home / "ca",
        organization=settings.organization,
        trust_domain=settings.trust_domain,
        key_type=settings.ca_key_type,
        passphrase=settings.ca_passphrase,
        signer=issuing_signer(settings),
    )


def _acmpca(settings: Settings) -> CABackend:
    if not settings.acmpca_ca_arn:
        raise ConfigurationError("NODECERT_ACMPCA_CA_ARN: required when NODECERT_CA=acmpca")
    from nodecert.backends.acmpca.backend import ACMPCABackend
    from nodecert.support.awsclients import make_client

    # max_attempts=1: the backend retries by itself, under its own deadline.
    return ACMPCABackend(
        make_client("acm-pca", region=settings.aws_region, max_attempts=1),
        ca_arn=settings.acmpca_ca_arn,
        short_lived_ca_arn=settings.acmpca_short_lived_ca_arn,
        template_arn=settings.acmpca_template_arn,
        organization=settings.organization,
        trust_domain=settings.trust_domain,
    )


# The registries bootstrap looks a choice up in (smallstep's cas/apiv1/registry.go): a new
# CA backend or store is one function and one entry here, and a missing entry fails typing.
_CA_BACKENDS: dict[CAKind, Callable[[Settings], CABackend]] = {
    CAKind.LOCAL: _local_ca,
    CAKind.ACMPCA: _acmpca,
}
_STORES: dict[StoreKind, Callable[[Settings], Stores]] = {
    StoreKind.SQLITE: _sqlite_stores,
    StoreKind.POSTGRES: _postgres_stores,
    StoreKind.DYNAMODB: _dynamodb_stores,
}
