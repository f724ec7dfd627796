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

The new files are written to ``<home>/ca/next/`` first and then renamed into place;
``finish`` completes a rotation a crash interrupted. Last, the ``rotation`` counter
advances: every process using the home (workers, the authorizer) reads the new state on
its next request. The caller holds the home's lock (:func:`~nodecert.backends.local.home.locked`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from nodecert.backends.local.hierarchy import key_bytes, load_key, make_intermediate, make_root
from nodecert.backends.local.home import (
    ROTATION,
    issuing_name,
    key_id,
    pem,
    read_certificate,
)
from nodecert.core.errors import ConfigurationError
from nodecert.core.keys import KeyType, PrivateKey, generate_private_key, hash_for
from nodecert.support.files import CounterFile, write_atomic

__all__ = ["finish", "install", "prune", "request", "rotate"]

# Renamed into place in this order: a root before the intermediate it signed.
_INSTALL_ORDER = ("root.key", "root.crt", "ca.key", "ca.crt")
# Written last into the stage: everything before it is there.
_READY = "ready"
# The key of a rotation whose certificate is signed elsewhere (request, then install).
_PENDING = "pending.key"
# When an issuing CA was retired (ISO 8601), for prune.
_RETIRED_AT = "retired-at"
# Staged with a new root whose key is not in the home (ACM PCA's): drop the old root key.
_ROOT_ELSEWHERE = "root-elsewhere"


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
) -> x509.Certificate:
    """Replace the issuing intermediate of the CA in ``directory``; return the new one.

    Args:
        root_key: The root key, when it is not ``directory/root.key`` (taken offline).
        new_root: Make a new root too (root rotation; how a one-tier CA of an earlier
            version becomes two-tier). Its key goes to ``directory/root.key``.
        retire_now: Refuse the old intermediate's certificates at once (see above).

    Raises:
        ConfigurationError: no CA, no usable root key, or a one-tier CA without
            ``new_root``.
    """
    finish(directory)
    load_key(directory / "ca.key", passphrase)  # Unlocks, or fails before anything is made.
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
    key = generate_private_key(key_type)
    certificate = make_intermediate(
        key.public_key(), issuing_name(organization, now), root_key=signer, root=root, now=now
    )
    new_pair = (signer, root) if new_root else None
    _install(directory, key, certificate, passphrase, new_pair, retire_now=retire_now)
    return certificate


def request(
    directory: Path, *, organization: str, key_type: KeyType, passphrase: str | None, now: datetime
) -> bytes:
    """Step one of a rotation signed elsewhere: a pending key, and its CSR (PEM).

    The key waits in ``directory/pending.key`` (0600) for :func:`install`; the CSR goes to
    whoever holds the root (``nodecert ca sign-intermediate`` with an offline root).
    """
    finish(directory)
    key = generate_private_key(key_type)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(issuing_name(organization, now))
        .sign(key, hash_for(key))
    )
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

    Raises:
        ConfigurationError: no pending key, a certificate for another key, one the root
            did not sign, one that is not an issuing CA (CA, path length 0, keyCertSign),
            another root without ``new_root`` or ``new_root`` without a root.
    """
    finish(directory)
    pending = directory / _PENDING
    if not pending.exists():
        raise ConfigurationError("ca rotate --install: no pending key: run --csr-out first")
    key = load_key(pending, passphrase)
    if certificate.public_key() != key.public_key():
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
    _install(directory, key, certificate, passphrase, pair, retire_now=retire_now)
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


def _install(
    directory: Path,
    key: PrivateKey,
    certificate: x509.Certificate,
    passphrase: str | None,
    new_root: tuple[PrivateKey | None, x509.Certificate] | None,
    *,
    retire_now: bool,
) -> None:
    old = read_certificate(directory / "ca.crt")
    old_key = load_key(directory / "ca.key", passphrase)
    # Keep the old intermediate (and the root it chains to, when that changes).
    retired = directory / "retired" / key_id(old)
    retired.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(retired / "ca.crt", pem(old), mode=0o600)
    write_atomic(retired / "ca.key", key_bytes(old_key, passphrase), mode=0o600)
    if (directory / "crlnumber").exists():
        # Its CRL numbers go on from where they were (RFC 5280: increasing per issuer).
        shutil.copyfile(directory / "crlnumber", retired / "crlnumber")
        (retired / "crlnumber").chmod(0o600)
    if new_root is not None and (directory / "root.crt").exists():
        shutil.copyfile(directory / "root.crt", retired / "root.crt")
        (retired / "root.crt").chmod(0o600)
    if new_root is not None and new_root[0] is None and (directory / "root.key").exists():
        # The new root's key is elsewhere (ACM PCA); the old one's is kept, out of the way.
        shutil.copyfile(directory / "root.key", retired / "root.key")
        (retired / "root.key").chmod(0o600)
    if retire_now:
        write_atomic(retired / "retired-now", b"", mode=0o600)
    write_atomic(retired / _RETIRED_AT, datetime.now(UTC).isoformat().encode(), mode=0o600)
    # The new files, staged, then renamed into place.
    staged = directory / "next"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(mode=0o700)
    if new_root is not None:
        if new_root[0] is not None:
            write_atomic(staged / "root.key", key_bytes(new_root[0], passphrase), mode=0o600)
        else:
            write_atomic(staged / _ROOT_ELSEWHERE, b"", mode=0o600)
        write_atomic(staged / "root.crt", pem(new_root[1]), mode=0o600)
    write_atomic(staged / "ca.key", key_bytes(key, passphrase), mode=0o600)
    write_atomic(staged / "ca.crt", pem(certificate), mode=0o600)
    write_atomic(staged / _READY, b"", mode=0o600)
    finish(directory)


def finish(directory: Path) -> None:
    """Complete a rotation whose files are staged in ``directory/next`` (a crash's).

    A rotation killed before its files were all staged did not happen: the stage is
    removed (a ``retired/`` entry it made for the current intermediate is ignored, see
    :func:`~nodecert.backends.local.home.read_home`).
    """
    staged = directory / "next"
    if not staged.is_dir():
        return
    if not (staged / _READY).exists():
        shutil.rmtree(staged, ignore_errors=True)
        return
    if (staged / _ROOT_ELSEWHERE).exists():
        # A new root whose key is elsewhere (ACM PCA): the home's root key is the old
        # root's (copied to its retired/ entry) and must not be taken for the new one's.
        # A marker, not "root.crt staged without root.key": that is also what a local
        # root rotation killed after renaming its new root.key leaves.
        (directory / "root.key").unlink(missing_ok=True)
    for name in _INSTALL_ORDER:
        if (staged / name).exists():
            os.replace(staged / name, directory / name)
    (staged / _ROOT_ELSEWHERE).unlink(missing_ok=True)
    (staged / _READY).unlink()
    staged.rmdir()
    CounterFile(directory / ROTATION).advance()


def prune(directory: Path, *, older_than: timedelta, now: datetime) -> list[str]:
    """Forget the issuing CAs retired more than ``older_than`` before ``now``.

    Every certificate they issued has expired by then when ``older_than`` is at least the
    longest lifetime the service allows (``NODECERT_MAX_VALIDITY_DAYS``), so nothing needs
    them any more: their entries under ``retired/`` are removed and every process using the
    home stops trusting them on its next request. Returns the key ids removed.
    """
    base = directory / "retired"
    removed: list[str] = []
    for entry in sorted(base.iterdir()) if base.is_dir() else ():
        try:
            stamp = (entry / _RETIRED_AT).read_text().strip()
            retired_at = datetime.fromisoformat(stamp)
        except (OSError, ValueError):
            # Retired before the time was kept: the entry's own time is the best there is.
            retired_at = datetime.fromtimestamp(entry.stat().st_mtime, UTC)
        if now - retired_at >= older_than:
            shutil.rmtree(entry)
            removed.append(entry.name)
    if removed:
        CounterFile(directory / ROTATION).advance()
    return removed


def _home_root_key(directory: Path, passphrase: str | None) -> PrivateKey:
    path = directory / "root.key"
    if not path.exists():
        raise ConfigurationError(
            f"ca rotate: the root key is not in {directory} (taken offline?):"
            " give it with --root-key PATH"
        )
    return load_key(path, passphrase)
