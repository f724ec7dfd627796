"""Where a rotation of the local CA's issuing intermediate puts its files, and when.

:mod:`nodecert.backends.local.rotation` makes the new intermediate; :func:`install_files`
writes it into the CA home (``<home>/ca``). The intermediate it replaces is kept in
``retired/<key id>/`` (its certificate, its key or the reference of a key held elsewhere,
its CRL number, its root when the root changes, ``retired-now`` for an emergency and
``retired-at`` for :func:`prune`). The new files are written to ``next/`` first and then
renamed into place; :func:`finish` completes a rotation a crash interrupted (or forgets one
killed before its files were all staged). Last, the ``rotation`` counter advances: every
process using the home (workers, the authorizer) reads the new state on its next request.
The caller holds the home's lock (:func:`~nodecert.backends.local.home.locked`).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from nodecert.backends.local.hierarchy import key_bytes, load_key
from nodecert.backends.local.home import (
    RETIRED,
    RETIRED_AT,
    RETIRED_NOW,
    ROTATION,
    key_id,
    pem,
    read_certificate,
)
from nodecert.core.keyrefs import KeyRef, format_ref
from nodecert.core.keys import PrivateKey
from nodecert.support.files import CounterFile, write_atomic

__all__ = ["KEYREF", "finish", "install_files", "prune"]

# The reference of an issuing key held elsewhere (nodecert.core.keyrefs.format_ref).
KEYREF = "ca.keyref"
# Renamed into place in this order: a root before the intermediate it signed.
_INSTALL_ORDER = ("root.key", "root.crt", "ca.key", KEYREF, "ca.crt")
# Staged when the new issuing key is held elsewhere: the home's ca.key (if any) goes.
_EXTERNAL = "external"
# Written last into the stage: everything before it is there.
_READY = "ready"
# Staged with a new root whose key is not in the home (ACM PCA's): drop the old root key.
_ROOT_ELSEWHERE = "root-elsewhere"


def install_files(
    directory: Path,
    key: PrivateKey | None,
    certificate: x509.Certificate,
    passphrase: str | None,
    new_root: tuple[PrivateKey | None, x509.Certificate] | None,
    *,
    retire_now: bool,
    keys: tuple[KeyRef | None, KeyRef] | None = None,
) -> None:
    """Retire the home's issuing CA and install ``certificate`` (with ``key``) in its place.

    Args:
        key: The new issuing key, or None when it is held elsewhere (``keys``).
        new_root: The new root's key (None when it is elsewhere: ACM PCA's) and
            certificate, or None when the root stays.
        retire_now: Mark the old intermediate ``retired-now`` (an emergency).
        keys: The references of the current key (None for the file ``ca.key``) and of the
            new one, when the new key is held elsewhere.
    """
    old = read_certificate(directory / "ca.crt")
    # Keep the old intermediate (and the root it chains to, when that changes), with its
    # key, or the reference of its key held elsewhere (for its CRLs).
    retired = directory / RETIRED / key_id(old)
    retired.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(retired / "ca.crt", pem(old), mode=0o600)
    if (directory / "ca.key").exists():
        old_key = load_key(directory / "ca.key", passphrase)
        write_atomic(retired / "ca.key", key_bytes(old_key, passphrase), mode=0o600)
    elif keys is not None and keys[0] is not None:
        write_atomic(retired / KEYREF, format_ref(keys[0]).encode(), mode=0o600)
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
        write_atomic(retired / RETIRED_NOW, b"", mode=0o600)
    write_atomic(retired / RETIRED_AT, datetime.now(UTC).isoformat().encode(), mode=0o600)
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
    if key is not None:
        write_atomic(staged / "ca.key", key_bytes(key, passphrase), mode=0o600)
    elif keys is not None:
        write_atomic(staged / KEYREF, format_ref(keys[1]).encode(), mode=0o600)
        write_atomic(staged / _EXTERNAL, b"", mode=0o600)
    write_atomic(staged / "ca.crt", pem(certificate), mode=0o600)
    write_atomic(staged / _READY, b"", mode=0o600)
    finish(directory)


def finish(directory: Path) -> None:
    """Complete a rotation whose files are staged in ``directory/next`` (a crash's).

    A rotation killed before its files were all staged did not happen: the stage is
    removed, and so is the ``retired/`` entry it made for the intermediate still in use
    (its ``retired-now`` mark would otherwise outlive it: a later planned rotation would
    retire that intermediate at once, and ``ca root-crl`` would revoke it).
    """
    staged = directory / "next"
    if not staged.is_dir():
        return
    if not (staged / _READY).exists():
        current = directory / RETIRED / key_id(read_certificate(directory / "ca.crt"))
        shutil.rmtree(current, ignore_errors=True)
        shutil.rmtree(staged, ignore_errors=True)
        return
    if (staged / _ROOT_ELSEWHERE).exists():
        # A new root whose key is elsewhere (ACM PCA): the home's root key is the old
        # root's (copied to its retired/ entry) and must not be taken for the new one's.
        # A marker, not "root.crt staged without root.key": that is also what a local
        # root rotation killed after renaming its new root.key leaves.
        (directory / "root.key").unlink(missing_ok=True)
    if (staged / _EXTERNAL).exists():
        # The issuing key moves out of files (into KMS or a token): the old key is kept in
        # its retired/ entry already and must not stay where a key is looked for.
        (directory / "ca.key").unlink(missing_ok=True)
    for name in _INSTALL_ORDER:
        if (staged / name).exists():
            os.replace(staged / name, directory / name)
    (staged / _ROOT_ELSEWHERE).unlink(missing_ok=True)
    (staged / _EXTERNAL).unlink(missing_ok=True)
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
    base = directory / RETIRED
    removed: list[str] = []
    for entry in sorted(base.iterdir()) if base.is_dir() else ():
        try:
            stamp = (entry / RETIRED_AT).read_text().strip()
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
