"""At-most-once renewal: recording a successor, and what a second renewal means.

A certificate renews once. Its successor is recorded and it is marked ``superseded`` in one
store transaction (``Ledger.record_successor``), so of two renewals racing exactly one
commits; the other, and every later renewal of the same certificate, is refused with
:class:`~nodecert.core.errors.AlreadyRenewedError` and logged: two holders of one key are
a copy of the key at best, a stolen key at worst.
"""

from __future__ import annotations

import logging

from nodecert.core.errors import AlreadyRenewedError, AuthorizationError, ConflictError
from nodecert.core.ports import Ledger
from nodecert.core.values import CertificateRecord, CertificateStatus

__all__ = ["already_renewed", "record_successor"]

log = logging.getLogger("nodecert.renewal")


def already_renewed(predecessor: CertificateRecord) -> AlreadyRenewedError:
    """Log a second renewal of ``predecessor`` as a possible stolen key; the error to raise."""
    log.warning(
        "renewal: %s (user %s, node %s) was already renewed by %s: a second renewal of"
        " one certificate means its key is in two hands (a copy, or a stolen key)",
        predecessor.serial,
        predecessor.user_id,
        predecessor.node_id,
        predecessor.superseded_by,
    )
    return AlreadyRenewedError(
        f"serial: {predecessor.serial} was already renewed; a certificate renews once"
        " (renew its successor, or revoke both if its key may be stolen)"
    )


def record_successor(ledger: Ledger, record: CertificateRecord) -> CertificateRecord:
    """Commit ``record`` as the successor of ``record.renewed_from``; return the row kept.

    A retried request that a remote CA answered with the very certificate already recorded
    (same serial, request id and fingerprint) gets that row back.

    Raises:
        AlreadyRenewedError: the predecessor was renewed before (logged).
        AuthorizationError: the predecessor was revoked meanwhile.
        ConflictError: any other clash (the serial exists).
        StoreUnavailableError: the store cannot answer now.
    """
    try:
        ledger.record_successor(record)
    except ConflictError:
        predecessor = ledger.get(record.renewed_from or "")
        existing = ledger.get(record.serial)
        if (
            predecessor is not None
            and existing is not None
            and predecessor.superseded_by == record.serial
            and (existing.request_id, existing.fingerprint_sha256)
            == (record.request_id, record.fingerprint_sha256)
        ):
            return existing
        if predecessor is not None and predecessor.status is CertificateStatus.SUPERSEDED:
            raise already_renewed(predecessor) from None
        if predecessor is not None and predecessor.status is CertificateStatus.REVOKED:
            raise AuthorizationError(
                f"serial: {predecessor.serial} was revoked while it renewed"
            ) from None
        raise
    return record
