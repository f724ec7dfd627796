"""An issuing CA key in a PKCS#11 token (an HSM; SoftHSM2 in the tests).

``NODECERT_CA_PKCS11_MODULE`` (the vendor's library), ``NODECERT_CA_PKCS11_TOKEN`` (token
label), ``NODECERT_CA_PKCS11_KEY_LABEL`` and the user PIN, from ``NODECERT_CA_PKCS11_PIN_FILE``
(a 0600 file) or ``NODECERT_CA_PKCS11_PIN``. The PIN is never logged, shown or put into an
error. ``nodecert ca init`` generates the key pair inside the token when none has the label
(private half sensitive and not extractable); the local CA then signs through the token
(an ``ExternalSigner``): ECDSA over a digest made here (``CKM_ECDSA``, which every token
has), RSA with ``CKM_SHA256_RSA_PKCS``. One session per process, one signature at a time
(PKCS#11 sessions are not shared between concurrent operations).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from nodecert.core.errors import BackendUnavailableError, ConfigurationError
from nodecert.core.keys import KeyType

__all__ = ["PKCS11Signer"]

_SETTINGS = "NODECERT_CA_PKCS11_*"


class PKCS11Signer:
    """Signs with a private key in a PKCS#11 token (an ``ExternalSigner``).

    Args:
        module: Path of the PKCS#11 library.
        token: The token's label.
        key_label: The label of the key pair.
        pin: The user PIN.
        create: A key type to generate the key pair with when the token has none of that
            label (``nodecert ca init``); None: it must exist.

    Raises:
        ConfigurationError: the library, token or key cannot be found or used, or the PIN
            is refused. The message never contains the PIN.
    """

    def __init__(
        self, module: Path, token: str, key_label: str, pin: str, *, create: KeyType | None = None
    ) -> None:
        import pkcs11
        from pkcs11 import ObjectClass
        from pkcs11.exceptions import NoSuchKey, PinIncorrect, PKCS11Error, UserAlreadyLoggedIn

        self.key_label = key_label
        self._lock = threading.Lock()
        self._private: Any = None
        try:
            found = pkcs11.lib(str(module)).get_token(token_label=token)
            try:
                self._session = found.open(user_pin=pin, rw=True)
            except UserAlreadyLoggedIn:
                # PKCS#11 logs in the whole process, not a session: this process already
                # did (nodecert ca init, then the service), so a new session is logged in.
                self._session = found.open(rw=True)
        except PinIncorrect:
            raise ConfigurationError(f"{_SETTINGS}: token {token!r} refused the PIN") from None
        except PKCS11Error as exc:
            raise ConfigurationError(
                f"{_SETTINGS}: cannot open token {token!r} with {module}: {type(exc).__name__}"
            ) from None
        try:
            try:
                public = self._session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=key_label)
                self._private = self._session.get_key(
                    object_class=ObjectClass.PRIVATE_KEY, label=key_label
                )
            except NoSuchKey:
                if create is None:
                    raise
                public, self._private = _generate(self._session, key_label, create)
        except PKCS11Error as exc:
            raise ConfigurationError(
                f"{_SETTINGS}: no usable key pair {key_label!r} in token {token!r}:"
                f" {type(exc).__name__}"
            ) from None
        self._public_key = _public_key(public)
        is_p384 = (
            isinstance(self._public_key, ec.EllipticCurvePublicKey)
            and self._public_key.curve.key_size >= 384
        )
        self._digest = hashlib.sha384 if is_p384 else hashlib.sha256

    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        """The key's public half (read once, at start)."""
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        """Have the token sign ``data``.

        Raises:
            BackendUnavailableError: the token refused or is gone (an HSM outage).
        """
        from pkcs11 import Mechanism
        from pkcs11.exceptions import PKCS11Error
        from pkcs11.util.ec import encode_ecdsa_signature

        try:
            with self._lock:
                if isinstance(self._public_key, rsa.RSAPublicKey):
                    signature: bytes = self._private.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
                    return signature
                raw = self._private.sign(self._digest(data).digest(), mechanism=Mechanism.ECDSA)
        except PKCS11Error as exc:
            raise BackendUnavailableError(f"ca: PKCS#11 sign: {type(exc).__name__}") from exc
        encoded: bytes = encode_ecdsa_signature(raw)
        return encoded

    def close(self) -> None:
        """Close the session (the key stays in the token)."""
        self._session.close()


def _generate(session: Any, label: str, key_type: KeyType) -> tuple[Any, Any]:
    from pkcs11 import Attribute
    from pkcs11 import KeyType as TokenKeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    private = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
    if key_type.is_rsa:
        bits = int(key_type.value.split("-")[1])
        return session.generate_keypair(  # type: ignore[no-any-return]
            TokenKeyType.RSA, bits, store=True, label=label, private_template=private
        )
    curve = "secp384r1" if key_type is KeyType.EC_P384 else "secp256r1"
    parameters = session.create_domain_parameters(
        TokenKeyType.EC,
        {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)},
        local=True,
    )
    return parameters.generate_keypair(  # type: ignore[no-any-return]
        store=True, label=label, private_template=private
    )


def _public_key(public: Any) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    from pkcs11 import KeyType as TokenKeyType
    from pkcs11.util.ec import encode_ec_public_key
    from pkcs11.util.rsa import encode_rsa_public_key

    if public.key_type == TokenKeyType.EC:
        der = encode_ec_public_key(public)
    elif public.key_type == TokenKeyType.RSA:
        der = encode_rsa_public_key(public)
    else:
        raise ConfigurationError(f"{_SETTINGS}: the key is neither EC nor RSA")
    key = load_der_public_key(der)
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ConfigurationError(f"{_SETTINGS}: the key is neither EC nor RSA")
    return key
