"""What a renewal works on (:class:`RenewalTarget`) and how its local steps fail."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nodecert.client._client import Client
from nodecert.core.errors import NodecertError

__all__ = ["KeyMismatchError", "RenewalClientError", "RenewalTarget"]


class RenewalClientError(NodecertError):
    """A local renewal step failed (files, deploy hook); the message is one line."""

    code = "renewal_failed"
    title = "Renewal failed"


class KeyMismatchError(RenewalClientError):
    """The key file does not belong to the certificate file: no retry can fix that."""

    code = "key_mismatch"
    title = "Key does not match certificate"


@dataclass(frozen=True, slots=True)
class RenewalTarget:
    """What to renew: the certificate and key files, and the service to ask."""

    cert: Path
    key: Path
    client: Client
    audience: str | None = None
