"""Revocation that always finishes: the ledger first, then the CA, now or from the queue.

Every affected ledger row is marked revoked first, together with a queued CA revocation
(``RevocationOutbox``), and only then is the CA told: at once for what the request revoked
(:func:`sweep`, :func:`tell_ca`), and by :func:`finish_revocations`, which ``nodecert
serve`` (and a scheduled Lambda) runs until the queue is empty. A CA outage leaves the
ledger right (the next access decision denies) and the queue full, never a row active.

:class:`~nodecert.issuing.administration.Administration` decides what to revoke (who may,
which rows); these functions carry it out with the collaborators they read from it at each
call (:class:`RevocationParts`), so an administration whose CA is replaced tells the new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from nodecert.core.errors import NodecertError
from nodecert.core.identity import parse_serial
from nodecert.core.metrics import Metrics
from nodecert.core.ports import CABackend, RevocationOutbox
from nodecert.core.values import CertificateRecord, RevocationReason

__all__ = [
    "CA_STRIKES",
    "RevocationParts",
    "count_revoked",
    "finish_revocations",
    "sweep",
    "tell_ca",
]

log = logging.getLogger("nodecert.revocation")

CA_STRIKES = 3
"""Failed CA revocations in a row after which ``finish_revocations`` stops (CA down)."""


class RevocationParts(Protocol):
    """The collaborators of a revocation (an ``Administration`` has them all)."""

    ca: CABackend
    outbox: RevocationOutbox
    metrics: Metrics
    clock: Callable[[], datetime]


def sweep(
    parts: RevocationParts, rows: list[CertificateRecord], reason: RevocationReason
) -> list[CertificateRecord]:
    """Revoke the live rows of ``rows``: the ledger and the queue, then the CA; return them."""
    # The ledger first (the next access decision denies), with the CA revocations
    # queued in the same transaction; then the CA (ACM PCA's CRL), now or later.
    now = parts.clock()
    live = [row.serial for row in rows if row.status.is_live and row.not_after > now]
    revoked = parts.outbox.revoke_and_queue(live, reason=reason, at=now) if live else []
    count_revoked(parts, revoked, reason)
    tell_ca(parts, revoked)
    return revoked


def count_revoked(
    parts: RevocationParts, rows: list[CertificateRecord], reason: RevocationReason
) -> None:
    """Count ``rows`` as revoked for ``reason`` in the metrics."""
    if rows:
        parts.metrics.count("revocations", {"reason": str(reason)}, len(rows))


def tell_ca(parts: RevocationParts, rows: list[CertificateRecord]) -> None:
    """Tell the CA of the revocations a request queued; whatever it does not take stays queued.

    An older backlog is left to the background drain, so that a request after a CA outage
    does not pay for it. A failure here is retried by that drain, not reported: the ledger
    is done.
    """
    try:
        for row in rows:
            reason = row.revocation_reason or RevocationReason.UNSPECIFIED
            try:
                parts.ca.revoke(parse_serial(row.serial), reason, issuer=row.issuer)
            except NodecertError as exc:
                log.warning(
                    "revocation: the CA did not take %s now (%s); it stays queued",
                    row.serial,
                    exc.detail,
                )
                return
            parts.outbox.revocation_sent(row.serial)
    except NodecertError as exc:
        log.warning("revocation: the queue could not be updated now (%s)", exc.detail)


def finish_revocations(
    parts: RevocationParts, *, limit: int = 100, failed: set[str] | None = None
) -> int:
    """Tell the CA about up to ``limit`` queued revocations; return how many are left.

    A revocation the CA does not take (an error, a disabled or deleted CA, throttling
    that outlasts the retries) stays queued and is logged with its serial; the next
    ones are still tried, so one poisoned revocation never holds up the rest. After
    :data:`CA_STRIKES` failures in a row with nothing taken in between the call stops:
    the CA looks down, and the rest would fail too. Safe to run from several processes
    at once, and again after a crash at any point: telling the CA twice is not an
    error.

    Args:
        parts: The CA and the queue.
        limit: How many queued revocations to try (those in ``failed`` not counted).
        failed: Serials the CA did not take earlier in this run: skipped, and the
            ones that fail now are added (a scheduled sweep passes one set to every
            batch, so that each batch tries revocations not yet tried).

    Raises:
        StoreUnavailableError: the queue cannot be read or updated now.
    """
    skip = set() if failed is None else failed
    strikes = 0
    for pending in parts.outbox.pending_revocations(limit=limit + len(skip)):
        if pending.serial in skip:
            continue
        try:
            parts.ca.revoke(parse_serial(pending.serial), pending.reason, issuer=pending.issuer)
        except (NodecertError, ValueError) as exc:
            detail = exc.detail if isinstance(exc, NodecertError) else str(exc)
            log.warning(
                "revocation: the CA did not take %s yet (%s); it stays queued",
                pending.serial,
                detail,
            )
            skip.add(pending.serial)
            strikes += 1
            if strikes >= CA_STRIKES:
                break
            continue
        strikes = 0
        parts.outbox.revocation_sent(pending.serial)
    return parts.outbox.count_pending_revocations()
