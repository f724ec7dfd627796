"""The signer seam: a CA key that never sits in a file (AWS KMS), behind one protocol.

pyca ``cryptography`` signs certificates and CRLs with its own key objects only. For a key
held elsewhere, the certificate (or CRL) is built and signed by ``cryptography`` with a
*stand-in* key of the same algorithm, which gives the exact to-be-signed bytes and
signature algorithm identifier the real key needs; the real key signs those bytes, and
pyasn1's RFC 5280 modules put its signature in place of the stand-in's. Nothing of the
DER is written by hand, and the stand-in's signature never leaves this module.
"""

from __future__ import annotations

import functools
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from nodecert.core.keys import KeyType, PrivateKey, generate_private_key, hash_for, key_type_of

__all__ = ["ExternalSigner", "sign_certificate", "sign_crl"]


class ExternalSigner(Protocol):
    """A CA key held outside this process (AWS KMS).

    ``sign`` returns the signature of ``data`` as X.509 wants it: ECDSA as DER
    ``Ecdsa-Sig-Value``, RSA as PKCS#1 v1.5, with SHA-384 for P-384 and SHA-256 otherwise.
    """

    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        """The key's public half."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign ``data``.

        Raises:
            BackendUnavailableError: the key's service cannot sign now.
        """
        ...


def sign_certificate(builder: x509.CertificateBuilder, signer: ExternalSigner) -> x509.Certificate:
    """``builder`` signed by ``signer`` (see the module docstring)."""
    from pyasn1_alt_modules import rfc5280

    draft = builder.sign(_stand_in(signer), hash_for(_stand_in(signer)))
    signature = signer.sign(draft.tbs_certificate_bytes)
    der = _with_signature(draft.public_bytes(Encoding.DER), rfc5280.Certificate(), signature)
    return x509.load_der_x509_certificate(der)


def sign_crl(
    builder: x509.CertificateRevocationListBuilder, signer: ExternalSigner
) -> x509.CertificateRevocationList:
    """``builder`` signed by ``signer`` (see the module docstring)."""
    from pyasn1_alt_modules import rfc5280

    draft = builder.sign(_stand_in(signer), hash_for(_stand_in(signer)))
    signature = signer.sign(draft.tbs_certlist_bytes)
    der = _with_signature(draft.public_bytes(Encoding.DER), rfc5280.CertificateList(), signature)
    return x509.load_der_x509_crl(der)


def _with_signature(der: bytes, spec: object, signature: bytes) -> bytes:
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.type import univ

    document, rest = decoder.decode(der, asn1Spec=spec)
    if rest:
        raise ValueError("signer: trailing bytes after the signed document")
    document["signature"] = univ.BitString.fromOctetString(signature)
    encoded: bytes = encoder.encode(document)
    return encoded


def _stand_in(signer: ExternalSigner) -> PrivateKey:
    return _stand_in_key(key_type_of(signer.public_key()))


@functools.cache
def _stand_in_key(key_type: KeyType) -> PrivateKey:
    # Made once per key type: only its algorithm matters (the signature identifier), and
    # RSA's identifier does not depend on the size, so the smallest allowed size will do.
    return generate_private_key(KeyType.RSA_2048 if key_type.is_rsa else key_type)
