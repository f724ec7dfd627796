"""``Idempotency-Key``: one client key, at most one certificate, never billed twice.

A retry of a request whose answer was lost (a timeout, a dropped connection) must not make
the CA sign again: with ACM Private CA every signature is billed. The CA's own
``IdempotencyToken`` cannot cover it for server-generated keys, because a retry makes a new
key (the token hashes the public key so that a new key never gets the certificate of the
one thrown away), and it only lasts five minutes. Storing the private key to answer the
retry with it is not an option either: private keys never reach disk.

So an Idempotency-Key is claimed, in the store that keeps single-use tokens (SQLite,
PostgreSQL, DynamoDB: shared by all workers and Lambda containers), before the CA is asked,
with a hash of the request; the claim is a record with a status in the style of Powertools
for AWS Lambda, spelled with two single-use entries:

- ``(key, request hash)`` claimed now: a new request. ``key`` alone claimed too: first use
  of the key, the CA signs. ``key`` alone already claimed: the key was used for another
  request, :class:`IdempotencyKeyReusedError` (400).
- ``(key, request hash)`` already claimed: the same request again. When the ledger has its
  certificate (status completed), :class:`IdempotentReplayError` (409) names its serial;
  otherwise (in progress, or failed after reaching the CA) the 409 says so. Either way the
  CA is not asked again; a new key is a new, deliberately billed, request.

A claim is released (both entries deleted, like Powertools deleting its in-progress record
when the handler fails) when the request failed where it is known that the CA accepted
nothing, so that the retry the key exists for gets its certificate instead of a 409:

- before the CA was asked at all (the store failed between the two entries, making the key
  or the CSR failed, the request's deadline passed before sending);
- the CA refused outright: a definite error answer (ACM PCA's ``ThrottlingException`` on
  every attempt, ``ValidationException``, ``LimitExceededException``, a refused CSR), a
  connection that was never opened, or any failure of a CA that signs in this process
  (the local CA: what it did not return does not exist anywhere else);
- see :attr:`~nodecert.core.errors.BackendUnavailableError.nothing_issued`.

The claim is kept, and the retry gets the 409, only when the outcome is unknown or the CA
signed: a timeout or a reset connection after ``IssueCertificate`` was sent, a 5xx answer
to it, ``RequestInProgressException`` until the deadline, or the ledger failing after the
CA signed. Asking again then could make and bill a second certificate that nobody holds.

Claims last 24 hours. Requests without an Idempotency-Key are not claimed: each is new.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.core.errors import (
    BackendUnavailableError,
    ConflictError,
    IdempotencyKeyReusedError,
    IdempotentReplayError,
    InvalidRequestError,
    NodecertError,
)
from nodecert.core.identity import Identity
from nodecert.core.ports import Ledger, ReplayGuard
from nodecert.core.values import CertificateQuery, Profile

__all__ = ["CLIENT_KEY_PREFIX", "Claim", "IdempotencyGuard", "nothing_issued", "request_hash"]

_log = logging.getLogger("nodecert.idempotency")

CLIENT_KEY_PREFIX = "idem-"
"""Request ids made from a client's ``Idempotency-Key`` start with this (see the routes)."""


def request_hash(
    identity: Identity,
    *,
    profile: Profile,
    key_type: str,
    csr: x509.CertificateSigningRequest | None,
    lifetime: timedelta,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
) -> str:
    """SHA-256 (hex) of everything that decides what certificate a request gets."""
    csr_der = csr.public_bytes(serialization.Encoding.DER).hex() if csr is not None else None
    # Only when there are some: a key claimed before addresses existed hashes as it did.
    addresses = {"ipAddresses": list(ip_addresses)} if ip_addresses else {}
    canonical = json.dumps(
        addresses
        | {
            "userId": identity.user_id,
            "nodeId": identity.node_id,
            "profile": profile.value,
            "keyType": key_type,
            "csr": csr_der,
            "seconds": int(lifetime.total_seconds()),
            "dnsNames": list(dns_names),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def nothing_issued(exc: BaseException, *, in_process: bool) -> bool:
    """Whether ``exc``, raised by a CA's ``issue``, proves that the CA issued nothing.

    A CA that builds certificates in this process (``in_process``) has issued nothing it
    did not return. A remote CA has when it refused the request (a 4xx: the CSR, the
    validity) or said so (``BackendUnavailableError.nothing_issued``: never reached,
    throttled on every attempt); any other failure may have come after it signed.
    """
    if in_process or isinstance(exc, InvalidRequestError):
        return True
    return isinstance(exc, BackendUnavailableError) and exc.nothing_issued


@dataclass(frozen=True, slots=True)
class Claim:
    """What :meth:`IdempotencyGuard.claim` recorded: its store entries and their expiry."""

    entries: tuple[str, ...]
    expires_at: datetime


class IdempotencyGuard:
    """Claims client idempotency keys before a CA signs (see the module docstring).

    Args:
        replay: The store's single-use facility.
        ledger: Where the certificate of a completed request is found.
        ttl: How long a key is remembered.
    """

    def __init__(
        self, replay: ReplayGuard, ledger: Ledger, *, ttl: timedelta = timedelta(hours=24)
    ) -> None:
        self._replay = replay
        self._ledger = ledger
        self._ttl = ttl

    @staticmethod
    def keyed(request_id: str) -> bool:
        """Whether ``request_id`` comes from a client's Idempotency-Key (so is claimed)."""
        return request_id.startswith(CLIENT_KEY_PREFIX)

    def claim(
        self, request_id: str, identity: Identity, digest: str, *, now: datetime
    ) -> Claim | None:
        """Claim ``request_id`` for the request hashed to ``digest``; None without a key.

        Returns:
            The claim, for :meth:`release` when the request fails before the CA accepted
            anything; None for a request without an Idempotency-Key (nothing claimed).

        Raises:
            IdempotentReplayError: the same request was made before with this key.
            IdempotencyKeyReusedError: the key was used for a different request.
            StoreUnavailableError: the store cannot answer now (nothing was signed, and
                what this call claimed is released again as far as the store allows).
        """
        if not self.keyed(request_id):
            return None
        expires_at = now + self._ttl
        request_entry = _entry(request_id, digest)
        try:
            self._replay.use_once(request_entry, expires_at=expires_at)
        except ConflictError:
            raise self._replayed(request_id, identity) from None
        claimed = Claim(entries=(request_entry,), expires_at=expires_at)
        try:
            self._replay.use_once(_entry(request_id, None), expires_at=expires_at)
        except ConflictError:
            # The request's own entry goes again, or a retry of this same (refused) request
            # would meet it and be told "already made" instead of "key reused".
            self.release(claimed)
            raise IdempotencyKeyReusedError(
                "Idempotency-Key: already used for a different request (another node, key"
                " type, CSR, validity or DNS names); use a new key for a new request"
            ) from None
        except NodecertError:
            self.release(claimed)
            raise
        return Claim(entries=(_entry(request_id, None), request_entry), expires_at=expires_at)

    def release(self, claim: Claim) -> None:
        """Forget ``claim``: its request failed before the CA accepted anything.

        The key's own entry goes first: a retry racing with the release then finds the
        request's entry still there (409, "not finished"), never the key without it (which
        would read as a key reused for another request). A store that cannot answer is
        logged, not raised: the request's own error is what the caller must see, and the
        claim then simply stands until it expires.
        """
        for entry in claim.entries:
            try:
                self._replay.release(entry, expires_at=claim.expires_at)
            except NodecertError as exc:
                _log.warning(
                    "idempotency: a claim could not be released (%s); the key stays used"
                    " until it expires",
                    exc.detail,
                )
                return

    def _replayed(self, request_id: str, identity: Identity) -> IdempotentReplayError:
        rows = self._ledger.query(
            CertificateQuery(user_id=identity.user_id, node_id=identity.node_id)
        )
        row = next((r for r in rows if r.request_id == request_id), None)
        if row is None:
            return IdempotentReplayError(
                "Idempotency-Key: an earlier request with this key has not finished, or failed"
                " after reaching the CA; it is not sent to the CA again. List the node's"
                " certificates in a few seconds, or use a new key for a new certificate",
                serial_number=None,
            )
        return IdempotentReplayError(
            f"Idempotency-Key: already used; certificate {row.serial} was issued for this"
            " request. Its private key (if the server made it) was never stored and cannot"
            " be sent again: revoke it if it is lost, and use a new key for a new certificate",
            serial_number=row.serial,
        )


def _entry(request_id: str, digest: str | None) -> str:
    # Hashed, so an entry cannot collide with the renewal tokens' entries in the same store.
    raw = f"idempotency\0{request_id}\0{digest or ''}"
    return "idem:" + hashlib.sha256(raw.encode()).hexdigest()
