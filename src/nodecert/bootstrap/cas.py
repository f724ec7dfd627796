"""The CA backend registry: one function per ``NODECERT_CA`` choice, and the local CA's
issuing key outside a file (AWS KMS, PKCS#11)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from nodecert.core.choices import CAKind
from nodecert.core.config import Settings
from nodecert.core.errors import ConfigurationError
from nodecert.core.keyrefs import KeyKind, KeyRef, format_ref, unreachable
from nodecert.core.ports import CABackend

if TYPE_CHECKING:
    from nodecert.backends.signers.external import ExternalSigner

__all__ = ["CA_BACKENDS", "issuing_signer", "kms_signer", "open_ca"]


def issuing_signer(settings: Settings, *, create: bool = False) -> ExternalSigner | None:
    """The local CA's issuing key outside any file (AWS KMS, PKCS#11), or None for a file.

    ``create`` (``nodecert ca init``) generates the PKCS#11 key pair when the token has
    none of the label.

    Raises:
        ConfigurationError: both are set, a setting is missing, or the key cannot be used.
    """
    if settings.ca_pkcs11_module is None:
        return None if settings.ca_kms_key_id is None else kms_signer(settings)
    if settings.ca_kms_key_id is not None:
        raise ConfigurationError(
            "NODECERT_CA_PKCS11_MODULE and NODECERT_CA_KMS_KEY_ID: one issuing key, not two"
        )
    if not settings.ca_pkcs11_token:
        raise ConfigurationError("NODECERT_CA_PKCS11_TOKEN: required with the module")
    if (settings.ca_pkcs11_pin is None) == (settings.ca_pkcs11_pin_file is None):
        raise ConfigurationError(
            "NODECERT_CA_PKCS11_PIN or NODECERT_CA_PKCS11_PIN_FILE: set exactly one"
        )
    pin = settings.ca_pkcs11_pin
    if settings.ca_pkcs11_pin_file is not None:
        try:
            pin = settings.ca_pkcs11_pin_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"NODECERT_CA_PKCS11_PIN_FILE: cannot read {settings.ca_pkcs11_pin_file}"
            ) from exc
    try:
        from nodecert.backends.signers.pkcs11 import PKCS11Signer
    except ImportError as exc:
        raise ConfigurationError(
            "NODECERT_CA_PKCS11_MODULE: python-pkcs11 is not installed"
            " (pip install 'nodecert[pkcs11]')"
        ) from exc
    return PKCS11Signer(
        settings.ca_pkcs11_module,
        settings.ca_pkcs11_token,
        settings.ca_pkcs11_key_label,
        pin or "",
        create=settings.ca_key_type if create else None,
    )


def kms_signer(settings: Settings) -> ExternalSigner:
    """The local CA's issuing key in AWS KMS (``NODECERT_CA_KMS_KEY_ID``).

    Raises:
        ConfigurationError: boto3 is missing, or the key cannot be used (see ``KMSSigner``).
    """
    if settings.ca_kms_key_id is None:
        raise ConfigurationError("NODECERT_CA_KMS_KEY_ID: not set")
    try:
        from nodecert.backends.signers.kms import KMSSigner
        from nodecert.support.awsclients import make_client

        client = make_client("kms", region=settings.aws_region, max_attempts=2)
    except ImportError as exc:
        raise ConfigurationError(
            "NODECERT_CA_KMS_KEY_ID: boto3 is not installed (pip install 'nodecert[aws]')"
        ) from exc
    return KMSSigner(client, settings.ca_kms_key_id)


def open_ca(settings: Settings) -> CABackend:
    """The CA backend ``settings.ca`` names.

    Raises:
        ConfigurationError: its settings are incomplete or its key cannot be used.
    """
    return CA_BACKENDS[settings.ca](settings)


def _local_ca(settings: Settings) -> CABackend:
    # Imported when chosen, like each backend: a Lambda function (ACM PCA) never loads
    # the local CA's modules, nor the ciphers they bring (its cold start).
    from nodecert.backends.local.ca import LocalCA

    return LocalCA.open_or_create(
        settings.home / "ca",
        organization=settings.organization,
        trust_domain=settings.trust_domain,
        key_type=settings.ca_key_type,
        passphrase=settings.ca_passphrase,
        signer=issuing_signer(settings),
        key_refs=_key_refs(settings),
    )


def _key_refs(settings: Settings) -> Callable[[KeyRef], ExternalSigner]:
    # A retired issuing CA whose key was held elsewhere keeps its reference (a KeyRef): its
    # CRLs are signed there, with this service's region, module, token and PIN.
    def reach(reference: KeyRef) -> ExternalSigner:
        if reference.kind is KeyKind.KMS:
            return kms_signer(dataclasses.replace(settings, ca_kms_key_id=reference.name))
        if settings.ca_pkcs11_module is not None:
            chosen = dataclasses.replace(
                settings, ca_pkcs11_key_label=reference.name, ca_kms_key_id=None
            )
            signer = issuing_signer(chosen)
            if signer is not None:
                return signer
        raise unreachable(format_ref(reference))

    return reach


def _acmpca(settings: Settings) -> CABackend:
    if not settings.acmpca_ca_arn:
        raise ConfigurationError("NODECERT_ACMPCA_CA_ARN: required when NODECERT_CA=acmpca")
    from nodecert.backends.acmpca.backend import ACMPCABackend
    from nodecert.support.awsclients import make_client

    # max_attempts=1: the backend retries by itself, under its own deadline.
    return ACMPCABackend(
        make_client("acm-pca", region=settings.aws_region, max_attempts=1),
        ca_arn=settings.acmpca_ca_arn,
        short_lived_ca_arn=settings.acmpca_short_lived_ca_arn,
        template_arn=settings.acmpca_template_arn,
        retiring_ca_arns=settings.acmpca_retiring_arns,
        retired_ca_arns=settings.acmpca_retired_arns,
        organization=settings.organization,
        trust_domain=settings.trust_domain,
    )


# The registry bootstrap looks a CA choice up in (smallstep's cas/apiv1/registry.go): a new
# CA backend is one function and one entry here, and a missing entry fails typing.
CA_BACKENDS: dict[CAKind, Callable[[Settings], CABackend]] = {
    CAKind.LOCAL: _local_ca,
    CAKind.ACMPCA: _acmpca,
}
