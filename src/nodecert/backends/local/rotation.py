"""Rotating the local CA's issuing intermediate: ``nodecert ca rotate``.

A rotation makes a new issuing intermediate (under the same root, or under a new root with
``new_root``) and keeps the one it replaces in ``<home>/ca/retired/<key id>/`` (its
certificate, its key for its CRLs, and its root when the root changed):

- **planned** (default): the old intermediate is *retiring*. Its certificates stay valid
  until they expire (``GET /v1/ca``, the access decision), and renewal agents renew them
  early (``GET /v1/ca/issuers`` says ``retiring``);
- **emergency** (``retire_now``, its key leaked): a ``retired-now`` marker makes every
  access decision refuse its certificates at once; a genuine one still renews onto the new
  intermediate by proof of possession, because the ledger knows it, while one minted with
  the leaked key is in no ledger and neither passes nor renews.

An issuing key held outside any file (AWS KMS, a PKCS#11 token) rotates onto another key
there (``issuing``, named by ``key_ref``, a :class:`~nodecert.core.keyrefs.KeyRef`): no
``ca.key`` is written, ``ca.keyref`` names the key in use, and the retired entry keeps the
old key's reference instead of the key. The service signs with the key its settings name
(``NODECERT_CA_KMS_KEY_ID``, ``NODECERT_CA_PKCS11_KEY_LABEL``), so it moves to the new key
when restarted with the new setting; until then it keeps the old one, which is still
trusted (retiring).

This module makes and checks what a rotation installs: the new intermediate (``rotate``),
or the pending key and its CSR (``request``) and the certificate signed elsewhere for it
(``install``). Writing it into the home, completing a crashed rotation (``finish``) and
forgetting old retired CAs (``prune``) are :mod:`nodecert.backends.local.rotation_files`.
The caller holds the home's lock (:func:`~nodecert.backends.local.home.locked`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from nodecert.backends.local.hierarchy import key_bytes, load_key, make_intermediate, make_root
from nodecert.backends.local.home import issuing_name, read_certificate
from nodecert.backends.local.rotation_files import KEYREF, finish, install_files
from nodecert.backends.signers.external import ExternalSigner, sign_csr
from nodecert.core.errors import ConfigurationError
from nodecert.core.keyrefs import KeyRef, format_ref
from nodecert.core.keys import KeyType, PrivateKey, generate_private_key, hash_for
from nodecert.support.files import write_atomic

# KEYREF and finish are re-exported: the CA (backends.local.ca) reads a home through them.
__all__ = ["KEYREF", "finish", "install", "request", "rotate"]

# The key of a rotation whose certificate is signed elsewhere (request, then install).
_PENDING = "pending.key"
# The reference of a pending key held elsewhere (request, then install).
_PENDING_REF = "pending.keyref"


def rotate(
    directory: Path,
    *,
    organization: str,
    key_type: KeyType,
    passphrase: str | None,
    now: datetime,
    root_key: PrivateKey | None = None,
    new_root: bool = False,
    retire_now: bool = False,
    issuing: ExternalSigner | None = None,
    keys: tuple[KeyRef | None, KeyRef] | None = None,
) -> x509.Certificate:
    """Replace the issuing intermediate of the CA in ``directory``; return the new one.

    Args:
        root_key: The root key, when it is not ``directory/root.key`` (taken offline).
        issuing: The next issuing key, held elsewhere (see the module docstring); None
            makes a new key in ``directory/ca.key``.
        keys: With ``issuing``: the references of the current key (None when it is the
            file ``ca.key``) and of the next one.
        new_root: Make a new root too (root rotation; how a one-tier CA of an earlier
            version becomes two-tier). Its key goes to ``directory/root.key``.
        retire_now: Refuse the old intermediate's certificates at once (see above).

    Raises:
        ConfigurationError: no CA, no usable root key, or a one-tier CA without
            ``new_root``.
    """
    finish(directory)
    _check_keys(directory, passphrase, issuing, keys)
    two_tier = (directory / "root.crt").exists()
    if new_root:
        signer = generate_private_key(key_type)
        root = make_root(signer, organization, now)
    elif not two_tier:
        raise ConfigurationError(
            "ca rotate: this CA is one self-signed root (an earlier version's), which cannot"
            " sign an intermediate: rotate with --new-root (a new root and intermediate; the"
            " old CA stays trusted until its certificates expire)"
        )
    else:
        root = read_certificate(directory / "root.crt")
        signer = root_key if root_key is not None else _home_root_key(directory, passphrase)
    key: PrivateKey | None = None
    if issuing is None:
        key = generate_private_key(key_type)
        public_key = key.public_key()
    else:
        public_key = issuing.public_key()
    certificate = make_intermediate(
        public_key, issuing_name(organization, now), root_key=signer, root=root, now=now
    )
    new_pair = (signer, root) if new_root else None
    install_files(
        directory, key, certificate, passphrase, new_pair, retire_now=retire_now, keys=keys
    )
    return certificate


def _check_keys(
    directory: Path,
    passphrase: str | None,
    issuing: ExternalSigner | None,
    keys: tuple[KeyRef | None, KeyRef] | None,
) -> None:
    # Fails before anything is made: a locked key file, or a reference missing.
    if (issuing is None) != (keys is None):
        raise TypeError("rotation: issuing and keys go together")
    if (directory / "ca.key").exists():
        load_key(directory / "ca.key", passphrase)
    elif keys is None or keys[0] is None:
        raise ConfigurationError(
            f"ca rotate: no issuing key file in {directory}: the key is held elsewhere;"
            " name the next one (--kms-key-id or --pkcs11-key-label)"
        )
    if keys is not None and keys[0] == keys[1]:
        raise ConfigurationError(f"ca rotate: {format_ref(keys[1])} is the issuing key already")
    in_use = directory / KEYREF
    if keys is not None and in_use.exists():
        named = in_use.read_text().strip()
        if keys[0] is None or named != format_ref(keys[0]):
            # The settings still name the key before the last rotation: the old key's
            # reference would be recorded wrong, and its CRLs signed by the wrong key.
            raise ConfigurationError(
                f"ca rotate: the home's issuing key is {named} ({KEYREF}), the settings name"
                f" {keys[0]}: set them to the key in use (and restart the service) first"
            )


def request(
    directory: Path,
    *,
    organization: str,
    key_type: KeyType,
    passphrase: str | None,
    now: datetime,
    issuing: ExternalSigner | None = None,
    key_ref: KeyRef | None = None,
) -> bytes:
    """Step one of a rotation signed elsewhere: a pending key, and its CSR (PEM).

    The key waits in ``directory/pending.key`` (0600) for :func:`install`; the CSR goes to
    whoever holds the root (``nodecert ca sign-intermediate`` with an offline root). With
    ``issuing`` (a key held elsewhere, named ``key_ref``) that key signs the CSR and only
    its reference waits, in ``directory/pending.keyref``.
    """
    finish(directory)
    builder = x509.CertificateSigningRequestBuilder().subject_name(issuing_name(organization, now))
    (directory / _PENDING).unlink(missing_ok=True)
    (directory / _PENDING_REF).unlink(missing_ok=True)
    if issuing is not None and key_ref is not None:
        csr = sign_csr(builder, issuing)
        write_atomic(directory / _PENDING_REF, format_ref(key_ref).encode(), mode=0o600)
    else:
        key = generate_private_key(key_type)
        csr = builder.sign(key, hash_for(key))
        write_atomic(directory / _PENDING, key_bytes(key, passphrase), mode=0o600)
    return csr.public_bytes(serialization.Encoding.PEM)


def install(
    directory: Path,
    certificate: x509.Certificate,
    *,
    passphrase: str | None,
    parents: Sequence[x509.Certificate] = (),
    new_root: bool = False,
    retire_now: bool = False,
    issuing: ExternalSigner | None = None,
    keys: tuple[KeyRef | None, KeyRef] | None = None,
) -> x509.Certificate:
    """Step two: rotate to ``certificate``, the root's signature on :func:`request`'s CSR.

    Args:
        parents: The chain above ``certificate`` as it came with it (``ca
            sign-intermediate --acmpca-arn`` writes PCA's root after the intermediate).
            Empty, or the home's root: the root stays.
        new_root: Move the home to the root in ``parents`` (a root kept in ACM PCA): it
            becomes ``root.crt`` and what ``GET /v1/ca/roots`` publishes; the old root and
            intermediate stay trusted until they are pruned, and a root key in the home
            (the old root's) moves to the old intermediate's ``retired/`` entry.
        issuing, keys: For a pending key held elsewhere: that key, and the references of
            the current key and of it (as for :func:`rotate`).

    Raises:
        ConfigurationError: no pending key, a certificate for another key, one the root
            did not sign, one that is not an issuing CA (CA, path length 0, keyCertSign),
            another root without ``new_root`` or ``new_root`` without a root.
    """
    finish(directory)
    pending = directory / (_PENDING if issuing is None else _PENDING_REF)
    if not pending.exists():
        raise ConfigurationError("ca rotate --install: no pending key: run --csr-out first")
    key: PrivateKey | None = None
    if issuing is None:
        key = load_key(pending, passphrase)
        public_key = key.public_key()
    else:
        _check_keys(directory, passphrase, issuing, keys)
        waiting = pending.read_text().strip()
        if keys is None or waiting != format_ref(keys[1]):
            raise ConfigurationError(
                f"ca rotate --install: the pending key is {waiting}, not the one given"
            )
        public_key = issuing.public_key()
    if certificate.public_key() != public_key:
        raise ConfigurationError("ca rotate --install: the certificate is for another key")
    root_path = directory / "root.crt"
    if not root_path.exists():
        raise ConfigurationError("ca rotate --install: this CA has no root.crt (one tier)")
    root = _root_for(read_certificate(root_path), parents, new_root=new_root)
    try:
        certificate.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigurationError("ca rotate --install: the root did not sign it") from exc
    if not _is_ca(certificate, path_length=0):
        raise ConfigurationError("ca rotate --install: not an issuing CA certificate")
    pair = (None, root) if new_root else None
    install_files(directory, key, certificate, passphrase, pair, retire_now=retire_now, keys=keys)
    pending.unlink()
    return certificate


def _root_for(
    home_root: x509.Certificate, parents: Sequence[x509.Certificate], *, new_root: bool
) -> x509.Certificate:
    """The root ``install`` checks against: the home's, or the new one in ``parents``."""
    if len(parents) > 1:
        raise ConfigurationError(
            f"ca rotate --install: {len(parents)} certificates above the intermediate; the"
            " home keeps one root above its issuing CA"
        )
    given = parents[0] if parents else None
    if not new_root:
        if given is not None and given != home_root:
            name = given.subject.rfc4514_string()
            raise ConfigurationError(
                f"ca rotate --install: it chains to another root ({name});"
                " add --new-root to move the home to it (then give it to every trust store)"
            )
        return home_root
    if given is None or given == home_root:
        raise ConfigurationError(
            "ca rotate --install --new-root: CERT holds no new root after the intermediate"
        )
    try:
        given.verify_directly_issued_by(given)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigurationError("ca rotate --install: the new root is not self-signed") from exc
    if not _is_ca(given, path_length=None):
        raise ConfigurationError("ca rotate --install: the new root is not a CA certificate")
    return given


def _is_ca(certificate: x509.Certificate, *, path_length: int | None) -> bool:
    """CA:TRUE with keyCertSign, and path length 0 when ``path_length`` is 0."""
    try:
        basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    if path_length == 0 and basic.path_length != 0:
        return False
    return basic.ca and usage.key_cert_sign


def _home_root_key(directory: Path, passphrase: str | None) -> PrivateKey:
    path = directory / "root.key"
    if not path.exists():
        raise ConfigurationError(
            f"ca rotate: the root key is not in {directory} (taken offline?):"
            " give it with --root-key PATH"
        )
    return load_key(path, passphrase)
