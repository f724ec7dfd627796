"""``nodecert ca rotate`` with the issuing key held outside any file (AWS KMS, PKCS#11).

The next key is named on the command line (``--kms-key-id``, ``--pkcs11-key-label``) and
reached with the rest of the current settings (region, module, token, PIN); a PKCS#11 key
pair of that label is generated in the token when it has none, as ``ca init`` does. The
references the home keeps are ``kms:<key id>`` and ``pkcs11:<label>``
(:mod:`nodecert.core.keyrefs`).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from nodecert.cli.common import CLIError, UsageError
from nodecert.core.keyrefs import KeyKind, KeyRef

if TYPE_CHECKING:
    from nodecert.backends.signers.external import ExternalSigner
    from nodecert.core.config import Settings

__all__ = ["NextKey", "add_next_key_options", "next_key", "option_for", "restart_note"]

# Of each kind of key held elsewhere: the ``ca rotate`` option that names the next one, and
# the setting that names the one the service signs with.
_NAMED_BY: dict[KeyKind, tuple[str, str]] = {
    KeyKind.KMS: ("--kms-key-id", "NODECERT_CA_KMS_KEY_ID"),
    KeyKind.PKCS11: ("--pkcs11-key-label", "NODECERT_CA_PKCS11_KEY_LABEL"),
}


@dataclasses.dataclass(frozen=True)
class NextKey:
    """The next issuing key held elsewhere, and the references of the current and next."""

    signer: ExternalSigner
    keys: tuple[KeyRef | None, KeyRef]

    @property
    def variable(self) -> str:
        """The setting that names the next key (``NODECERT_CA_KMS_KEY_ID``, ...)."""
        return _NAMED_BY[self.keys[1].kind][1]


def option_for(ref: KeyRef) -> str:
    """The ``ca rotate`` option naming ``ref``: ``--kms-key-id <key id>``, ..."""
    return f"{_NAMED_BY[ref.kind][0]} {ref.name}"


def add_next_key_options(rotate: argparse.ArgumentParser) -> None:
    """``--kms-key-id`` and ``--pkcs11-key-label`` on ``ca rotate``."""
    where = rotate.add_mutually_exclusive_group()
    option, variable = _NAMED_BY[KeyKind.KMS]
    where.add_argument(
        option,
        metavar="KEY",
        help=(
            "the next issuing key in AWS KMS (an asymmetric SIGN_VERIFY key: id, ARN or"
            f" alias); the service moves to it when restarted with {variable}=KEY"
        ),
    )
    option, variable = _NAMED_BY[KeyKind.PKCS11]
    where.add_argument(
        option,
        metavar="LABEL",
        help=(
            "the next issuing key in the PKCS#11 token (made there when missing); the"
            f" service moves to it when restarted with {variable}=LABEL"
        ),
    )


def next_key(args: argparse.Namespace, settings: Settings) -> NextKey | None:
    """The next key the options name, or None for a new key file (none named).

    Raises:
        UsageError: an option that does not fit where the issuing key is now.
        CLIError: the current key is held elsewhere and no next one is named.
        ConfigurationError: the next key cannot be used (unknown, wrong kind, locked token).
    """
    from nodecert.bootstrap import issuing_signer, kms_signer

    current = key_ref(settings)
    if args.kms_key_id is not None:
        if settings.ca_pkcs11_module is not None:
            raise UsageError(
                "ca rotate --kms-key-id: the issuing key is in a PKCS#11 token"
                " (NODECERT_CA_PKCS11_MODULE); name the next one with --pkcs11-key-label"
            )
        chosen = dataclasses.replace(settings, ca_kms_key_id=args.kms_key_id)
        return NextKey(kms_signer(chosen), (current, KeyRef(KeyKind.KMS, args.kms_key_id)))
    if args.pkcs11_key_label is not None:
        if settings.ca_pkcs11_module is None:
            raise UsageError(
                "ca rotate --pkcs11-key-label: no PKCS#11 token is configured"
                " (NODECERT_CA_PKCS11_MODULE, _TOKEN and the PIN)"
            )
        chosen = dataclasses.replace(settings, ca_pkcs11_key_label=args.pkcs11_key_label)
        signer = issuing_signer(chosen, create=True)
        if signer is None:  # pragma: no cover - the module is set, so a signer is made
            raise CLIError("ca rotate: no PKCS#11 signer")
        return NextKey(signer, (current, KeyRef(KeyKind.PKCS11, args.pkcs11_key_label)))
    if current is not None:
        option = _NAMED_BY[current.kind][0]
        raise CLIError(
            f"ca rotate: the issuing key is held elsewhere ({current}); name the next one"
            f" with {option} (a new key file would take it out of there)"
        )
    return None


def key_ref(settings: Settings) -> KeyRef | None:
    """The reference of the issuing key the settings name; None for the file ``ca.key``."""
    if settings.ca_pkcs11_module is not None:
        return KeyRef(KeyKind.PKCS11, settings.ca_pkcs11_key_label)
    if settings.ca_kms_key_id is not None:
        return KeyRef(KeyKind.KMS, settings.ca_kms_key_id)
    return None


def restart_note(chosen: NextKey, *, retire_now: bool) -> str:
    """What the operator must do next: the service signs with the key its settings name."""
    when = (
        "now: until then it signs with the retired key, whose certificates are refused"
        if retire_now
        else "(until then it signs with the previous key, which stays trusted: retiring)"
    )
    return (
        f"then: set {chosen.variable}={chosen.keys[1].name} for every process using this home and"
        f" restart them {when}"
    )
