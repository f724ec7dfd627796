"""The local CA as administration needs it: its certificate and its revocation count.

Revoking a certificate of the local CA signs nothing: the ledger row is the revocation, and
the CA only counts it, in ``<home>/ca/revocations``, so that every process serving its CRL
rebuilds it. The administration commands (``nodecert nodes …``, ``revoke``, ``revoke-all``
on the local home) therefore never read, and never need the passphrase of, the CA key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from nodecert.backends.local.issuer import counter_io
from nodecert.core.errors import ConfigurationError
from nodecert.core.values import RevocationReason, SignedCertificate, SigningRequest
from nodecert.support.files import CounterFile

__all__ = ["LocalCARevocations"]


class LocalCARevocations:
    """The local CA in ``directory`` without its key. Implements ``CABackend``.

    :meth:`issue` refuses: whoever signs needs :class:`~nodecert.backends.local.ca.LocalCA`.
    The revocation counter is the file :class:`~nodecert.backends.local.ca.LocalCA` keeps.
    """

    builds_in_process = True
    never_waits = True  # It signs nothing (issue refuses at once).

    def __init__(self, directory: Path) -> None:
        self._certificate_path = directory / "ca.crt"
        self._revocations = CounterFile(directory / "revocations", durable=False)

    def issue(self, request: SigningRequest) -> SignedCertificate:
        """Refuse: signing needs the CA key, which this view never reads.

        Raises:
            ConfigurationError: always.
        """
        raise ConfigurationError(
            "local CA: opened without its key for an administration command, which signs nothing"
        )

    def chain(self) -> Sequence[x509.Certificate]:
        """The CA certificate (the local CA is its own root).

        Raises:
            ConfigurationError: ``ca.crt`` is missing or not a certificate.
        """
        try:
            return (x509.load_pem_x509_certificate(self._certificate_path.read_bytes()),)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"local CA: cannot read {self._certificate_path}") from exc

    def revoke(
        self, certificate_serial: int, reason: RevocationReason, *, issuer: str | None = None
    ) -> None:
        """Count the revocation, as :meth:`LocalCA.revoke` does: every CRL is stale now."""
        counter_io("the revocation count", self._revocations.advance)
