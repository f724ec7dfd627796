"""The reference of the local CA's issuing key held outside any file: ``kms:<key id>`` or
``pkcs11:<label>``.

A CA home keeps it in ``ca.keyref`` (the key in use) and in the ``retired/`` entry of an
issuing CA whose key was held elsewhere (for its CRLs); ``ca rotate`` names the next key
with it. :func:`format_ref` writes it and :func:`parse_ref` reads it back, for every layer
(the CLI, bootstrap, the local CA); nothing else splits or joins the text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from nodecert.core.errors import ConfigurationError

__all__ = ["KeyKind", "KeyRef", "format_ref", "parse_ref", "unreachable"]

# How much of a reference an error message shows (a file may hold anything).
_SHOWN = 120


class KeyKind(enum.StrEnum):
    """Where an issuing key held outside any file lives: the reference's scheme."""

    KMS = "kms"
    PKCS11 = "pkcs11"


@dataclass(frozen=True, slots=True)
class KeyRef:
    """An issuing key held elsewhere: its kind and its name there.

    Attributes:
        kind: AWS KMS or a PKCS#11 token.
        name: The KMS key id (id, ARN or alias) or the PKCS#11 key label, as given.
    """

    kind: KeyKind
    name: str

    def __str__(self) -> str:
        return format_ref(self)


def format_ref(ref: KeyRef) -> str:
    """The text of ``ref``: ``<kind>:<name>`` (what ``ca.keyref`` holds)."""
    return f"{ref.kind.value}:{ref.name}"


def parse_ref(text: str) -> KeyRef:
    """The reference ``text`` names (the inverse of :func:`format_ref`).

    The name is everything after the first colon, as written (a KMS ARN has colons of
    its own); it is not stripped: whoever reads a file strips its line first.

    Raises:
        ConfigurationError: no known scheme before the first colon, or no name after it.
    """
    kind, _, name = text.partition(":")
    try:
        known = KeyKind(kind)
    except ValueError:
        raise unreachable(text) from None
    if not name:
        raise unreachable(text)
    return KeyRef(known, name)


def unreachable(text: str) -> ConfigurationError:
    """The error for a reference this service cannot use: malformed, or a kind it has no
    settings for (``pkcs11:`` without ``NODECERT_CA_PKCS11_MODULE``). Shows at most the
    first 120 characters of ``text``, quoted."""
    return ConfigurationError(f"{text[:_SHOWN]!r} names no key this service can reach")
