"""The CA certificates of an ACM PCA rotation's overlap, from each CA's chain.

Each chain is what ``GetCertificateAuthorityCertificate`` gives for one CA, that CA first
and its root last (:func:`~nodecert.backends.acmpca.parameters.ordered_chain`). The issuing CAs
are ``NODECERT_ACMPCA_CA_ARN`` (and ``_SHORT_LIVED_CA_ARN``); the retiring and retired ones
are ``NODECERT_ACMPCA_RETIRING_ARNS`` and ``_RETIRED_ARNS`` (docs/aws.md, "Rotating the
issuing CA").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptography import x509

from nodecert.core.values import IssuerSet

__all__ = ["issuer_set_of", "served_chain"]

Chain = Sequence[x509.Certificate]


def served_chain(
    chains: Sequence[Chain], *, first_root_last: bool = True
) -> tuple[x509.Certificate, ...]:
    """``GET /v1/ca`` of several CAs: each CA first (in the order of ``chains``), then
    the CAs above them, then the roots, the root of the first chain very last.

    One chain is returned as it is (when it is in order, issuing CA first).

    Args:
        chains: Each CA's chain, that CA first.
        first_root_last: False for the roots in the order they come, the chains' own CAs
            first: the order ``nodecert aws truststore`` writes (:mod:`nodecert.aws.truststore`),
            kept so that an unchanged set of CAs keeps the truststore's S3 version.
    """
    found = (*(chain[0] for chain in chains if chain), *_flat(chains))
    certificates = _unique(c for c in found if not _root(c))
    if first_root_last:
        roots = _unique(c for chain in reversed(chains) for c in chain if _root(c))
    else:
        roots = _unique(c for c in found if _root(c))
    return (*certificates, *roots)


def issuer_set_of(
    *, active: Sequence[Chain], retiring: Sequence[Chain], retired: Sequence[Chain]
) -> IssuerSet:
    """The :class:`IssuerSet` of issuing (``active``), ``retiring`` and ``retired`` CAs.

    Roots and intermediates are those of the issuing and retiring chains; ``retired`` holds
    the retired CAs and whatever is above them that no trusted chain holds (a root of their
    own), so that a retired CA's certificates chain only for renewal. A CA that is a root
    itself (the one-tier ``PrivateCA`` shape) is among the roots, or the retired.
    """
    trusted = [*active, *retiring]
    roots = _unique(c for c in _flat(trusted) if _root(c))
    intermediates = _unique(
        c for c in (*(chain[0] for chain in trusted if chain), *_flat(trusted)) if not _root(c)
    )
    known = {*roots, *intermediates}
    leaving = _unique(c for c in _flat(retired) if c not in known)
    return IssuerSet(
        roots=tuple(roots),
        intermediates=tuple(intermediates),
        retired=tuple(leaving),
        issuing=tuple(chain[0] for chain in active if chain),
    )


def _flat(chains: Iterable[Chain]) -> list[x509.Certificate]:
    return [c for chain in chains for c in chain]


def _root(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


def _unique(certificates: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    seen: list[x509.Certificate] = []
    for certificate in certificates:
        if certificate not in seen:
            seen.append(certificate)
    return seen
