"""The local CA's certificates on Lambda, from the code package (``IssuingCA: KMS``).

With ``IssuingCA: KMS`` (``deploy/template.yaml``) the functions run nodecert's local CA
with its issuing key in AWS KMS (``NODECERT_CA_KMS_KEY_ID``). The key's certificate and
its root were made once by the operator (``nodecert ca init``) and packaged with the code
by ``deploy/build.sh`` (``CA_CHAIN``); ``NODECERT_CA_BUNDLE`` names that file. A Lambda
package is read-only and the local CA reads ``$NODECERT_HOME/ca``, so each execution
environment writes the two certificates there (``/tmp``) before the service is wired.

On Lambda a KMS key without that chain, or a packaged chain without a KMS key, does not
start: a CA made by one execution environment would be trusted by no other, and a CA key
is never packaged. Elsewhere (``nodecert serve``, tests), and for a local CA on Lambda
with neither (as before: a CA of the environment's own), nothing changes.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from nodecert.core.config import Settings
from nodecert.core.errors import ConfigurationError
from nodecert.support.files import write_atomic

__all__ = ["install_packaged_chain"]


def install_packaged_chain(settings: Settings, *, on_lambda: bool) -> None:
    """Write the packaged chain into ``$NODECERT_HOME/ca`` for the local CA to read.

    Does nothing unless ``NODECERT_CA=local``, or when the home has its CA already (an
    execution environment's second wiring).

    Args:
        settings: The function's settings.
        on_lambda: Running on Lambda, where a local CA needs the packaged chain and a
            KMS key.

    Raises:
        ConfigurationError: on Lambda, ``NODECERT_CA_KMS_KEY_ID`` without
            ``NODECERT_CA_BUNDLE`` or the reverse; a bundle that is unreadable, or not
            exactly an issuing CA followed by the self-signed root that signed it.
    """
    if settings.ca != "local":
        return
    directory = settings.home / "ca"
    if (directory / "ca.crt").exists():
        return
    if settings.ca_bundle is None:
        if on_lambda and settings.ca_kms_key_id is not None:
            raise ConfigurationError(
                "NODECERT_CA=local on Lambda: NODECERT_CA_BUNDLE must name the CA chain"
                " packaged with the code (deploy/build.sh CA_CHAIN=...); a CA made here"
                " would be trusted by no other execution environment"
            )
        return
    if on_lambda and settings.ca_kms_key_id is None:
        raise ConfigurationError(
            "NODECERT_CA=local on Lambda: the issuing key must be in AWS KMS"
            " (NODECERT_CA_KMS_KEY_ID); a CA key file is never packaged"
        )
    issuing, root = _chain(settings)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # ca.crt last: a home with it is complete (as nodecert.backends.local.home writes it).
    write_atomic(directory / "root.crt", root.public_bytes(Encoding.PEM), mode=0o600)
    write_atomic(directory / "ca.crt", issuing.public_bytes(Encoding.PEM), mode=0o600)


def _chain(settings: Settings) -> tuple[x509.Certificate, x509.Certificate]:
    path = settings.ca_bundle
    try:
        chain = x509.load_pem_x509_certificates(path.read_bytes()) if path else []
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"NODECERT_CA_BUNDLE: cannot read certificates from {path}"
        ) from exc
    if len(chain) != 2:
        raise ConfigurationError(
            f"NODECERT_CA_BUNDLE: {path} has {len(chain)} certificate(s); the local CA needs"
            " its issuing CA followed by its root (ca.crt, then root.crt)"
        )
    issuing, root = chain
    try:
        if root.issuer != root.subject:
            raise ValueError("not self-signed")
        root.verify_directly_issued_by(root)
        issuing.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigurationError(
            f"NODECERT_CA_BUNDLE: {path}: the second certificate must be the self-signed"
            " root that signed the first (ca.crt, then root.crt)"
        ) from exc
    return issuing, root
