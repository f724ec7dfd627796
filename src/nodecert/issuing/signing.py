"""Making one certificate for an identity the caller may have: sign, check, record.

:class:`~nodecert.issuing.authority.Authority` decides who may get which certificate
(ids, ownership, quota, renewal rules); :func:`sign_and_record` makes it: claims the
request's Idempotency-Key, makes the key (unless there is a CSR), has the CA sign, checks
what a remote CA returned, and hands the ledger row over. It reads its collaborators from
the authority at every call (:class:`SigningParts`), so an authority whose CA or ledger is
replaced signs with the new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from cryptography import x509

from nodecert.core.errors import (
    BackendUnavailableError,
    ConflictError,
    InvalidIdentifierError,
    NodecertError,
)
from nodecert.core.identity import Identity, format_serial
from nodecert.core.keys import (
    ClientCSR,
    KeyType,
    PrivateKey,
    PublicKey,
    build_csr,
)
from nodecert.core.keys import private_key_pem as render_private_key
from nodecert.core.metrics import Metrics
from nodecert.core.ports import CABackend, Ledger
from nodecert.core.values import CertificateRecord, Commit, Profile, SigningRequest
from nodecert.issuing.idempotency import Claim, IdempotencyGuard, nothing_issued, request_hash
from nodecert.issuing.renewal_once import record_successor
from nodecert.issuing.values import IssuedCertificate, chain_pem, pem_and_fingerprint

__all__ = ["SigningParts", "check_signed", "sign_and_record"]

# Certificates start a minute in the past so that a client whose clock is slightly behind
# the server's can use one at once.
_BACKDATE = timedelta(minutes=1)


class SigningParts(Protocol):
    """The collaborators a certificate is made with (an ``Authority`` has them all)."""

    ca: CABackend
    ledger: Ledger
    keygen: Callable[[KeyType], PrivateKey]
    clock: Callable[[], datetime]
    idempotency: IdempotencyGuard | None
    metrics: Metrics
    organization: str
    trust_domain: str
    ca_label: dict[str, str]
    store_label: dict[str, str]


def sign_and_record(
    parts: SigningParts,
    identity: Identity,
    *,
    key_type: KeyType,
    csr: ClientCSR | None,
    lifetime: timedelta,
    request_id: str,
    renewed_from: str | None = None,
    profile: Profile = Profile.CLIENT,
    dns_names: tuple[str, ...] = (),
    user_subject: str | None = None,
    ip_addresses: tuple[str, ...] = (),
) -> tuple[IssuedCertificate, Commit]:
    """Make the key (unless there is a CSR), have the CA sign, hand over the ledger row.

    The returned commit says when the row is durable; it is already done unless the CA
    built the certificate in this process: only such a certificate can be pending (a
    remote CA's answer to a retried request must meet the ledger's conflict check at once).
    """
    claim: Claim | None = None
    guard = parts.idempotency
    # Hashed only when there is a key to claim: most requests carry none.
    if guard is not None and guard.keyed(request_id):
        digest = request_hash(
            identity,
            profile=profile,
            key_type=key_type.value,
            csr=csr.request if csr is not None else None,
            lifetime=lifetime,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
        )
        claim = guard.claim(request_id, identity, digest, now=parts.clock())
    asked_ca = False
    ca = parts.ca
    in_process = ca.builds_in_process
    try:
        key: PrivateKey | None = None
        signing_csr: x509.CertificateSigningRequest | None = None
        if csr is None:
            key = parts.keygen(key_type)
            public_key = key.public_key()
            if not in_process:
                signing_csr = build_csr(
                    key,
                    identity,
                    organization=parts.organization,
                    trust_domain=parts.trust_domain,
                )
        else:
            signing_csr = csr.request
            public_key = csr.public_key
        now = parts.clock()
        asked_ca = True
        started = time.perf_counter()
        signed = ca.issue(
            SigningRequest(
                csr=signing_csr,
                identity=identity,
                not_before=now - _BACKDATE,
                not_after=now + lifetime,
                request_id=request_id,
                profile=profile,
                dns_names=dns_names,
                public_key=public_key,
                ip_addresses=ip_addresses,
            )
        )
    except Exception as exc:
        accepted_nothing = not asked_ca or nothing_issued(exc, in_process=in_process)
        if guard is not None and claim is not None and accepted_nothing:
            # The retry that the Idempotency-Key exists for must be able to succeed.
            guard.release(claim)
        if asked_ca and isinstance(exc, NodecertError):
            parts.metrics.count("ca_errors", {**parts.ca_label, "code": exc.code})
        raise
    parts.metrics.observe("ca_call_seconds", parts.ca_label, time.perf_counter() - started)
    certificate = signed.certificate
    if not in_process:
        check_signed(certificate, public_key, identity, trust_domain=parts.trust_domain)
    # The reply's text before the row goes to the ledger: a lone request's commit then
    # starts as soon as it is handed over, while the event loop has less left to do before
    # it waits (the committing thread needs the GIL the loop holds until then).
    certificate_pem, fingerprint_sha256 = pem_and_fingerprint(certificate)
    record = CertificateRecord(
        serial=format_serial(certificate.serial_number),
        user_id=identity.user_id,
        node_id=identity.node_id,
        key_type=key_type.value,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        fingerprint_sha256=fingerprint_sha256,
        request_id=request_id,
        created_at=now,
        profile=profile,
        renewed_from=renewed_from,
        issuer=signed.issuer,
        dns_names=dns_names,
        user_subject=user_subject,
        ip_addresses=ip_addresses,
    )
    chain = chain_pem(tuple(signed.chain))
    private_key_pem = render_private_key(key) if key is not None else None
    ledger = parts.ledger
    started = time.perf_counter()
    # Only a certificate built here has a serial that no retry can bring back; a remote
    # CA's answer to a retried request needs the conflict check of _record, at once.
    if in_process and renewed_from is None:
        commit = ledger.record(record)
        commit.when_settled(lambda: _observe_commit(parts, started))
    else:
        if renewed_from is not None:
            record = record_successor(ledger, record)
        else:
            record = _record(ledger, record)
        _observe_commit(parts, started)
        commit = Commit.done()
    issued = IssuedCertificate(
        record=record,
        certificate_pem=certificate_pem,
        chain_pem=chain,
        private_key_pem=private_key_pem,
    )
    return issued, commit


def check_signed(
    certificate: x509.Certificate,
    public_key: PublicKey,
    identity: Identity,
    *,
    trust_domain: str,
) -> None:
    """Refuse what a CA returned when it is not what was asked for.

    A CA backend that signed something other than what was asked for (another key, a
    template that dropped the SAN) must never hand out a credential.

    Raises:
        BackendUnavailableError: another key, no identity of ours, or another identity.
    """
    if certificate.public_key() != public_key:
        raise BackendUnavailableError("ca: returned a certificate for a different key")
    try:
        signed_identity = Identity.from_certificate(certificate, trust_domain=trust_domain)
    except InvalidIdentifierError as exc:
        raise BackendUnavailableError("ca: returned a certificate without our identity") from exc
    if signed_identity != identity:
        raise BackendUnavailableError("ca: returned a certificate for another identity")


def _observe_commit(parts: SigningParts, started: float) -> None:
    seconds = time.perf_counter() - started
    parts.metrics.observe("ledger_commit_seconds", parts.store_label, seconds)


def _record(ledger: Ledger, record: CertificateRecord) -> CertificateRecord:
    try:
        ledger.record(record).wait()
    except ConflictError:
        # A remote CA answers a retried request (same idempotency token) with the
        # certificate it already issued. Same request, same certificate: hand it out
        # again instead of failing; anything else is a real clash.
        existing = ledger.get(record.serial)
        if existing is None or (existing.request_id, existing.fingerprint_sha256) != (
            record.request_id,
            record.fingerprint_sha256,
        ):
            raise
        return existing
    return record
