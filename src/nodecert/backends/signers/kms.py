"""An issuing CA key in AWS KMS (``NODECERT_CA_KMS_KEY_ID``): the local CA signs there.

The key is an asymmetric ``SIGN_VERIFY`` key, ``ECC_NIST_P256``, ``ECC_NIST_P384`` or
``RSA_2048``/``RSA_3072``/``RSA_4096``; its private half never leaves KMS. The local CA
keeps its profile, validity, ledger, CRL and rotation; only the signature is made by KMS
(``kms:Sign``), about one USD a month for the key plus a fee per signature, where ACM
Private CA costs 400 (50 in short-lived mode) plus a fee per certificate.

Messages up to 4,096 bytes (every certificate, and CRLs of up to a few dozen entries) are
sent whole (``MessageType=RAW``: KMS hashes them); longer ones as their digest
(``DIGEST``). moto models RAW only; DIGEST is checked with botocore's Stubber, and against a
real account it is what AWS documents. A KMS error is a 503 ``ca_unavailable`` at issuance
(nothing issued, nothing recorded) and a one-line configuration error at start.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from nodecert.core.errors import BackendUnavailableError, ConfigurationError

__all__ = ["KMSSigner"]

# KMS accepts a RAW message of at most 4,096 bytes.
_RAW_LIMIT = 4096
_KEY_SPECS = {
    "ECC_NIST_P256": ("ECDSA_SHA_256", hashlib.sha256),
    "ECC_NIST_P384": ("ECDSA_SHA_384", hashlib.sha384),
    "RSA_2048": ("RSASSA_PKCS1_V1_5_SHA_256", hashlib.sha256),
    "RSA_3072": ("RSASSA_PKCS1_V1_5_SHA_256", hashlib.sha256),
    "RSA_4096": ("RSASSA_PKCS1_V1_5_SHA_256", hashlib.sha256),
}


class KMSSigner:
    """Signs with a KMS key (an ``ExternalSigner``).

    Args:
        client: A boto3 KMS client (``bootstrap`` makes it with short timeouts).
        key_id: The key id, ARN or alias.

    Raises:
        ConfigurationError: no such key, not an asymmetric signing key of a supported
            spec, or KMS cannot be reached to read its public key.
    """

    def __init__(self, client: Any, key_id: str) -> None:
        from nodecert.support.awsclients import botocore_errors, error_code, error_message

        self._client = client
        self.key_id = key_id
        try:
            described = client.get_public_key(KeyId=key_id)
        except botocore_errors() as exc:
            raise ConfigurationError(
                f"NODECERT_CA_KMS_KEY_ID: KMS GetPublicKey {key_id}: {error_code(exc)}:"
                f" {error_message(exc)}"
            ) from exc
        spec = described.get("KeySpec") or described.get("CustomerMasterKeySpec")
        if described.get("KeyUsage") != "SIGN_VERIFY" or spec not in _KEY_SPECS:
            raise ConfigurationError(
                f"NODECERT_CA_KMS_KEY_ID: {key_id} is not an asymmetric SIGN_VERIFY key of"
                f" {', '.join(_KEY_SPECS)} (it is {described.get('KeyUsage')} {spec})"
            )
        public_key = load_der_public_key(described["PublicKey"])
        if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ConfigurationError(f"NODECERT_CA_KMS_KEY_ID: {key_id}: not an RSA or EC key")
        self._public_key = public_key
        self._algorithm, self._hash = _KEY_SPECS[spec]

    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        """The key's public half (read once, at start)."""
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        """Have KMS sign ``data``.

        Raises:
            BackendUnavailableError: KMS refused or did not answer (throttling, an
                outage, a key disabled or scheduled for deletion).
        """
        from nodecert.support.awsclients import botocore_errors, error_code, error_message

        if len(data) <= _RAW_LIMIT:
            message, kind = data, "RAW"
        else:
            message, kind = self._hash(data).digest(), "DIGEST"
        try:
            reply = self._client.sign(
                KeyId=self.key_id,
                Message=message,
                MessageType=kind,
                SigningAlgorithm=self._algorithm,
            )
        except botocore_errors() as exc:
            raise BackendUnavailableError(
                f"ca: KMS Sign: {error_code(exc)}: {error_message(exc)}"
            ) from exc
        signature = reply.get("Signature")
        if not isinstance(signature, bytes) or not signature:
            raise BackendUnavailableError("ca: KMS Sign returned no signature")
        return signature
