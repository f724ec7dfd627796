"""The signer seam: a CA key that never sits in a file (AWS KMS), behind one protocol.

pyca ``cryptography`` signs certificates and CRLs with its own key objects only. For a key
held elsewhere, the certificate (or CRL) is built and signed by ``cryptography`` with a
*stand-in* key of the same algorithm, which gives the exact to-be-signed bytes and
signature algorithm identifier the real key needs; the real key signs those bytes, and
pyasn1 puts its signature in place of the stand-in's (RFC 5280's SIGNED{} structure, the
signed part kept as its exact bytes). Nothing of the
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
    draft = builder.sign(_stand_in(signer), hash_for(_stand_in(signer)))
    signature = signer.sign(draft.tbs_certificate_bytes)
    return x509.load_der_x509_certificate(
        _with_signature(draft.public_bytes(Encoding.DER), signature)
    )


def sign_crl(
    builder: x509.CertificateRevocationListBuilder, signer: ExternalSigner
) -> x509.CertificateRevocationList:
    """``builder`` signed by ``signer`` (see the module docstring)."""
    draft = builder.sign(_stand_in(signer), hash_for(_stand_in(signer)))
    signature = signer.sign(draft.tbs_certlist_bytes)
    return x509.load_der_x509_crl(_with_signature(draft.public_bytes(Encoding.DER), signature))


def _with_signature(der: bytes, signature: bytes) -> bytes:
    # RFC 5280's SIGNED{} shape, shared by Certificate and CertificateList: the to-be-signed
    # part and the algorithm stay opaque (``Any`` keeps their exact bytes, unparsed), only
    # the signature BIT STRING is replaced.
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.type import univ

    document, rest = decoder.decode(der, asn1Spec=_signed_spec())
    if rest:
        raise ValueError("signer: trailing bytes after the signed document")
    document["signature"] = univ.BitString.fromOctetString(signature)
    encoded: bytes = encoder.encode(document)
    return encoded


@functools.cache
def _signed_spec() -> object:
    from pyasn1.type import namedtype, univ

    class Signed(univ.Sequence):  # type: ignore[misc]
        componentType = namedtype.NamedTypes(  # noqa: N815 - pyasn1 names it so
            namedtype.NamedType("toBeSigned", univ.Any()),
            namedtype.NamedType("signatureAlgorithm", univ.Any()),
            namedtype.NamedType("signature", univ.BitString()),
        )

    return Signed()


def _stand_in(signer: ExternalSigner) -> PrivateKey:
    return _stand_in_key(key_type_of(signer.public_key()))


@functools.cache
def _stand_in_key(key_type: KeyType) -> PrivateKey:
    # Made once per key type: only its algorithm matters (the signature identifier), and
    # RSA's identifier does not depend on the size, so the smallest allowed size will do.
    return generate_private_key(KeyType.RSA_2048 if key_type.is_rsa else key_type)
