"""Which issuing CAs are in use, retiring or retired: ``GET /v1/ca/issuers``.

Renewal agents read it to renew early when the CA that issued their certificate retires
(a rotation), so that a planned rotation completes within one watch interval and an
emergency one as soon as each agent looks. ACM PCA lists the CAs of
``NODECERT_ACMPCA_RETIRING_ARNS`` and ``_RETIRED_ARNS`` so; a CA backend without rotation
lists its chain's CAs as ``active``: nobody renews early.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from nodecert.core.keys import key_id
from nodecert.core.ports import CABackend, IssuerSource
from nodecert.core.values import IssuerSet

__all__ = ["IssuerState", "IssuerStatus", "issued_by", "issuer_statuses"]


class IssuerState(enum.StrEnum):
    """What a CA certificate is to relying parties and renewal agents."""

    ACTIVE = "active"  # Issues now.
    RETIRING = "retiring"  # Issued earlier; its certificates stay valid, renew them early.
    RETIRED = "retired"  # Retired at once: its certificates are refused; renew them now.
    ROOT = "root"  # A trust anchor that issues no leaf certificate.


@dataclass(frozen=True, slots=True)
class IssuerStatus:
    """One CA certificate and its :class:`IssuerState`."""

    certificate: x509.Certificate
    key_id: str
    state: IssuerState


# The last answer, with the issuer set (by identity: backends keep one until a rotation)
# and chain it was made of: the signature checks below run once per rotation, not once per
# request of a public route.
_last: tuple[IssuerSet, tuple[x509.Certificate, ...], tuple[IssuerStatus, ...]] | None = None


def issuer_statuses(ca: CABackend) -> list[IssuerStatus]:
    """Every CA certificate of ``ca`` with its state: the issuing one first."""
    global _last  # One small answer per process, replaced whole.
    chain = tuple(ca.chain())
    if not isinstance(ca, IssuerSource):
        return [IssuerStatus(c, key_id(c), IssuerState.ACTIVE) for c in chain]
    issuers = ca.issuer_set()
    last = _last
    if last is not None and last[0] is issuers and last[1] == chain:
        return list(last[2])
    statuses = _statuses(chain, issuers)
    _last = (issuers, chain, tuple(statuses))
    return statuses


def _statuses(chain: tuple[x509.Certificate, ...], issuers: IssuerSet) -> list[IssuerStatus]:
    issuing = issuers.issuing or (chain[0],)
    states: dict[x509.Certificate, IssuerState] = dict.fromkeys(issuing, IssuerState.ACTIVE)
    # The root in use issues no leaves (two tiers); another root is the one-tier CA of an
    # earlier version (or a replaced root): its leaves are retiring. With several issuing
    # CAs (ACM PCA), each one's issuer among the roots is in use: by signature, since two
    # roots may have the same name (a retiring one-tier root and its successor).
    if issuers.issuing:
        anchors = [r for r in issuers.roots if any(issued_by(c, r) for c in issuing)]
    else:
        anchors = [chain[-1]]
    for certificate in (*issuers.intermediates, *issuers.roots):
        if certificate not in states:
            state = IssuerState.ROOT if certificate in anchors else IssuerState.RETIRING
            states[certificate] = state
    for certificate in issuers.retired:
        states.setdefault(certificate, IssuerState.RETIRED)
    return [IssuerStatus(c, key_id(c), s) for c, s in states.items()]


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` issued ``certificate``: by name, and by signature (two CAs may
    have the same name)."""
    if certificate.issuer != issuer.subject:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
