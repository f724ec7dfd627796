"""The ASGI application factory that ``nodecert serve`` hands to uvicorn (one per worker)."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from nodecert.bootstrap import build_service, settings_from_environment
from nodecert.http.app import create_app as create_http_app
from nodecert.server.drainer import RevocationDrainer
from nodecert.server.serve import BoundedHttpToolsProtocol
from nodecert.support.logs import configure as configure_logging
from nodecert.support.metrics import PrometheusMetrics

__all__ = ["create_app"]

log = logging.getLogger("nodecert")


def create_app() -> FastAPI:
    """The ASGI application for ``uvicorn --factory`` (one per worker process)."""
    settings = settings_from_environment()
    BoundedHttpToolsProtocol.max_header_bytes = settings.max_header_bytes
    BoundedHttpToolsProtocol.head_timeout_s = float(settings.head_timeout_s)
    BoundedHttpToolsProtocol.body_timeout_s = float(settings.body_timeout_s)
    configure_logging(settings.log_level, settings.log_format)
    if settings.metrics == "on":
        metrics = PrometheusMetrics(flush_interval_s=float(settings.metrics_flush_s))
        service = build_service(
            settings, event_loop=True, metrics=metrics, metrics_exposition=metrics.exposition
        )
    else:
        service = build_service(settings, event_loop=True)
    # Revocations the CA did not take at once (an outage) are retried in the background.
    RevocationDrainer(
        service.administration.finish_revocations, interval_s=float(settings.revocation_retry_s)
    ).start()
    if service.dev_issuer is not None:
        log.warning(
            "DEV ISSUER ACTIVE: tokens are signed by %s/dev-issuer.key and anyone who can read"
            " it can act as any user. Set NODECERT_OIDC_ISSUER and NODECERT_OIDC_AUDIENCE for"
            " production.",
            settings.home,
        )
    return create_http_app(service)
