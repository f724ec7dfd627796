"""What the issuing use cases take and give, and the small conversions issuance needs.

:class:`IssueRequest` is what an adapter parses a request into; :class:`IssuedCertificate`
is what an issuance returns; :class:`NodeAssignment` is what a node (re-)assignment did.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.core.keys import ClientCSR, KeyType, read_client_csr
from nodecert.core.values import CertificateRecord, NodeRecord

__all__ = [
    "IssueRequest",
    "IssuedCertificate",
    "NodeAssignment",
    "NodeRemoval",
    "chain_pem",
    "key_request",
    "pem",
    "pem_and_fingerprint",
]


@dataclass(frozen=True, slots=True)
class IssueRequest:
    """A request for a certificate, as parsed by an adapter (ids not validated yet)."""

    node_id: object
    request_id: str
    key_type: object | None = None
    csr: object | None = None
    validity_days: object | None = None
    claimed_user_id: object | None = None
    renewed_from: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """The result of an issuance. ``private_key_pem`` is None when the client sent a CSR."""

    record: CertificateRecord
    certificate_pem: str
    chain_pem: str
    private_key_pem: str | None


@dataclass(frozen=True, slots=True)
class NodeAssignment:
    """What ``put_node`` did.

    Attributes:
        record: The node as it is now.
        previous_owner: Its owner before (None for a new node).
        revoked: How many certificates this call revoked (a transfer revokes every live
            certificate of the node that names another user).
        node_certificates: The node's own (server) certificates among them: the node
            serves with a revoked certificate until a new one is issued for it.
    """

    record: NodeRecord
    previous_owner: str | None
    revoked: int
    node_certificates: tuple[CertificateRecord, ...] = ()

    @property
    def transferred(self) -> bool:
        """Whether the node changed owner."""
        return self.previous_owner is not None and self.previous_owner != self.record.owner


@dataclass(frozen=True, slots=True)
class NodeRemoval:
    """What ``remove_node`` did.

    Attributes:
        node_id: The node removed.
        revoked: How many certificates this call revoked.
        node_certificates: The node's own (server) certificates among them.
    """

    node_id: str
    revoked: int
    node_certificates: tuple[CertificateRecord, ...] = ()


def key_request(key_type: object | None, csr: object | None) -> tuple[ClientCSR | None, KeyType]:
    """The checked client CSR (or None) and the key type of the certificate to make."""
    if csr is not None:
        if key_type is not None:
            KeyType.parse(key_type)  # Still refuse nonsense, even if unused.
        checked = read_client_csr(csr)
        return checked, checked.key_type
    return None, KeyType.RSA_2048 if key_type is None else KeyType.parse(key_type)


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def pem_and_fingerprint(certificate: x509.Certificate) -> tuple[str, str]:
    """The certificate as PEM, and its SHA-256 fingerprint (lower-case hex).

    From one encoding: pyca's ``public_bytes`` and ``fingerprint`` each write the
    certificate out again (about 70,000 instructions apiece, a sixth of the signing), so
    the DER is decoded back out of the PEM (base64 between the two armour lines) and hashed
    here. A test holds both to pyca's own.
    """
    text = certificate.public_bytes(serialization.Encoding.PEM)
    der = binascii.a2b_base64(text[text.index(b"\n") : text.rindex(b"-----END")])
    return text.decode("ascii"), hashlib.sha256(der).hexdigest()


@functools.lru_cache(maxsize=16)
def chain_pem(chain: tuple[x509.Certificate, ...]) -> str:
    # The same few CA certificates on every issuance: rendered once.
    return "".join(pem(c) for c in chain)
