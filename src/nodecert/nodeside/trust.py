"""The CA certificates the access decision trusts, refreshed when the CA rotates.

A :class:`Trust` holds roots and intermediates (fixed, fetched once from a chain source,
or asked of an ``IssuerSet`` source before every decision) and RFC 5280 client verifiers
built from them, one per second of wall time. A certificate chains to an issuing CA in
use, to one retired at once (only renewal accepts those: the ledger tells the genuine
certificates from those minted with a leaked key), or not at all.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.x509.verification import (
    ClientVerifier,
    PolicyBuilder,
    Store,
    VerificationError,
)

from nodecert.core.errors import NodecertError
from nodecert.core.values import IssuerSet

__all__ = ["Chain", "Trust"]


class Chain(enum.Enum):
    """How a certificate chains: to an issuing CA in use, to a retired one, or not at all."""

    OURS = "ours"
    RETIRED = "retired"
    NONE = "none"


class Trust:
    """Roots and intermediates, and the verifiers made of them (see the module docstring).

    Args:
        trust_anchors: Fixed roots.
        intermediates: Fixed intermediates.
        chain_source: Instead: the CA chain (issuing CA first, root last), fetched on the
            first verification and kept.
        issuer_source: Instead: the CA's :class:`IssuerSet`, asked before every
            verification; a new object rebuilds the verifiers.
    """

    def __init__(
        self,
        *,
        trust_anchors: Sequence[x509.Certificate] = (),
        intermediates: Sequence[x509.Certificate] = (),
        chain_source: Callable[[], Sequence[x509.Certificate]] | None = None,
        issuer_source: Callable[[], IssuerSet] | None = None,
    ) -> None:
        self._store: Store | None = Store(list(trust_anchors)) if trust_anchors else None
        self._intermediates = list(intermediates)
        self._chain_source = chain_source
        self._verifier_lock = threading.Lock()
        self._verifier: tuple[int, ClientVerifier] | None = None
        self._issuer_source = issuer_source
        self._issuers: IssuerSet | None = None
        # Verifying a certificate of a retired issuing CA (renewal only): its own store.
        self._retired_store: Store | None = None
        self._retired_intermediates: list[x509.Certificate] = []
        self._retired_verifier: tuple[int, ClientVerifier] | None = None

    def chains(self, certificate: x509.Certificate, at: datetime) -> Chain:
        """Where ``certificate`` chains at ``at``. Never raises: no chain is :attr:`Chain.NONE`."""
        try:
            verifier, intermediates = self._verifier_at(at)
            verifier.verify(certificate, intermediates)
        except (VerificationError, ValueError, NodecertError):
            pass
        else:
            return Chain.OURS
        retired = self._retired_at(at)
        if retired is None:
            return Chain.NONE
        try:
            retired[0].verify(certificate, retired[1])
        except (VerificationError, ValueError, NodecertError):
            return Chain.NONE
        return Chain.RETIRED

    def _load_chain(self) -> Store:
        chain = list(self._chain_source()) if self._chain_source is not None else []
        if not chain:
            raise ValueError("AccessDecider: the CA chain is empty")
        self._intermediates = chain[:-1]
        self._store = Store([chain[-1]])
        return self._store

    def _sync_issuers(self) -> None:
        # Under the verifier lock. The same IssuerSet object means nothing changed.
        if self._issuer_source is None:
            return
        issuers = self._issuer_source()
        if issuers is self._issuers:
            return
        roots = list(issuers.roots)
        self._store = Store(roots)
        self._intermediates = list(issuers.intermediates)
        retired_roots = [c for c in issuers.retired if c.issuer == c.subject]
        self._retired_intermediates = [c for c in issuers.retired if c.issuer != c.subject]
        self._retired_store = Store(roots + retired_roots) if issuers.retired else None
        self._verifier = self._retired_verifier = None
        self._issuers = issuers

    def _verifier_at(self, at: datetime) -> tuple[ClientVerifier, list[x509.Certificate]]:
        # Building a verifier is cheap but not free; one per second of wall time is plenty
        # (validity is checked to the second anyway).
        second = int(at.timestamp())
        with self._verifier_lock:
            self._sync_issuers()
            cached = self._verifier
            if cached is not None and cached[0] == second:
                return cached[1], self._intermediates
            store = self._store if self._store is not None else self._load_chain()
            built = PolicyBuilder().store(store).time(at).build_client_verifier()
            self._verifier = (second, built)
            return built, self._intermediates

    def _retired_at(self, at: datetime) -> tuple[ClientVerifier, list[x509.Certificate]] | None:
        second = int(at.timestamp())
        with self._verifier_lock:
            if self._retired_store is None:
                return None
            intermediates = self._intermediates + self._retired_intermediates
            cached = self._retired_verifier
            if cached is None or cached[0] != second:
                built = PolicyBuilder().store(self._retired_store).time(at)
                cached = (second, built.build_client_verifier())
                self._retired_verifier = cached
            return cached[1], intermediates
