"""Wiring: the only place that turns :class:`~nodecert.config.Settings` into objects."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nodecert.adapters.routes import Routes
from nodecert.authority import Authority
from nodecert.backends.local import LocalCA
from nodecert.config import Settings
from nodecert.errors import ConfigurationError
from nodecert.keypool import KeyPool
from nodecert.keys import KeyType
from nodecert.policy import OwnershipPolicy, ValidityPolicy
from nodecert.ports import CABackend
from nodecert.store.sqlite import SQLiteStore
from nodecert.verifiers.devissuer import DEV_AUDIENCE, DEV_ISSUER, DevIssuer
from nodecert.verifiers.oidc import OIDCVerifier, RemoteJWKS, StaticJWKS

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["Service", "build_service", "create_app", "settings_from_environment"]

log = logging.getLogger("nodecert")


@dataclass(frozen=True, slots=True)
class Service:
    """Everything a front end needs, built once per process."""

    settings: Settings
    authority: Authority
    routes: Routes
    dev_issuer: DevIssuer | None
    key_pool: KeyPool

    def close(self) -> None:
        """Stop background work (the key pool's filler) and drop pooled keys."""
        self.key_pool.close()


def settings_from_environment(env: Mapping[str, str] | None = None) -> Settings:
    """Parse the process environment (or ``env``) into Settings."""
    return Settings.from_env(os.environ if env is None else env)


def build_service(settings: Settings) -> Service:
    """Build the authority, its backends and the token verifier from ``settings``.

    Raises:
        ConfigurationError: a setting cannot be honoured (for example, a locked CA key).
    """
    store = _store(settings)
    dev_issuer = DevIssuer.open_or_create(settings.home) if settings.dev_issuer else None
    key_pool = KeyPool({kt: settings.key_pool_size for kt in KeyType if kt.is_rsa})
    authority = Authority(
        ca=_ca(settings),
        ledger=store,
        nodes=store,
        ownership=OwnershipPolicy(settings.ownership, store, settings.nodes_claim),
        validity=ValidityPolicy(settings.default_validity_days, settings.max_validity_days),
        organization=settings.organization,
        trust_domain=settings.trust_domain,
        keygen=key_pool,
    )
    if dev_issuer is not None:
        verifier = OIDCVerifier(
            issuer=DEV_ISSUER,
            audience=DEV_AUDIENCE,
            jwks=StaticJWKS(dev_issuer.jwks),
            admin_group=settings.admin_group,
        )
    else:
        if settings.oidc_issuer is None or settings.oidc_audience is None:
            raise ConfigurationError("NODECERT_OIDC_ISSUER and NODECERT_OIDC_AUDIENCE: set both")
        url = settings.oidc_jwks_url or settings.oidc_issuer.rstrip("/") + "/.well-known/jwks.json"
        verifier = OIDCVerifier(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks=RemoteJWKS(url),
            admin_group=settings.admin_group,
        )
    return Service(settings, authority, Routes(authority, verifier), dev_issuer, key_pool)


def create_app() -> FastAPI:
    """The ASGI application for ``uvicorn --factory`` (one per worker process)."""
    from nodecert.adapters.http import create_app as create_http_app

    settings = settings_from_environment()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    service = build_service(settings)
    if service.dev_issuer is not None:
        log.warning(
            "DEV ISSUER ACTIVE: tokens are signed by %s/dev-issuer.key and anyone who can read"
            " it can act as any user. Set NODECERT_OIDC_ISSUER and NODECERT_OIDC_AUDIENCE for"
            " production.",
            settings.home,
        )
    return create_http_app(service)


def _store(settings: Settings) -> SQLiteStore:
    if settings.store == "sqlite":
        return SQLiteStore(settings.database_path)
    raise ConfigurationError(f"NODECERT_STORE: {settings.store!r} is not available yet")


def _ca(settings: Settings) -> CABackend:
    if settings.ca == "local":
        return LocalCA.open_or_create(
            settings.home / "ca",
            organization=settings.organization,
            trust_domain=settings.trust_domain,
            key_type=settings.ca_key_type,
            passphrase=settings.ca_passphrase,
        )
    raise ConfigurationError(f"NODECERT_CA: {settings.ca!r} is not available yet")
