"""The files of a local CA home: creating a two-tier CA, reading its chain, the lock.

See :mod:`nodecert.backends.local` for the layout of ``<home>/ca/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from nodecert.backends.hierarchy import ca_name, key_bytes, make_intermediate, make_root
from nodecert.core.errors import ConfigurationError
from nodecert.core.files import write_atomic
from nodecert.core.keys import KeyType, generate_private_key

__all__ = ["create_two_tier", "issuing_name", "locked", "read_chain", "write_new_private"]


def create_two_tier(
    directory: Path,
    *,
    organization: str,
    key_type: KeyType,
    passphrase: str | None,
    now: datetime,
    root_key_out: Path | None = None,
) -> None:
    """Write a new two-tier CA into ``directory`` (see the module docstring).

    ``root_key_out`` writes the root key there instead of ``directory/root.key``, for the
    operator to take offline; it must not exist yet. The caller holds the directory lock.

    Raises:
        ConfigurationError: ``root_key_out`` exists or cannot be written.
    """
    root_key = generate_private_key(key_type)
    root = make_root(root_key, organization, now)
    key = generate_private_key(key_type)
    certificate = make_intermediate(
        key.public_key(), issuing_name(organization, now), root_key=root_key, root=root, now=now
    )
    sealed = key_bytes(root_key, passphrase)
    if root_key_out is None:
        write_atomic(directory / "root.key", sealed, mode=0o600)
    else:
        write_new_private(root_key_out, sealed)
    # Public, but under NODECERT_HOME every file is private (0600).
    write_atomic(directory / "root.crt", _pem(root), mode=0o600)
    write_atomic(directory / "ca.crt", _pem(certificate), mode=0o600)
    write_atomic(directory / "ca.key", key_bytes(key, passphrase), mode=0o600)


def read_chain(directory: Path, public_key: object = None) -> tuple[x509.Certificate, ...]:
    """The CA chain kept in ``directory`` (issuing CA first), without reading any key.

    ``public_key``, when given, must be the issuing certificate's (that of ``ca.key``).

    Raises:
        ConfigurationError: no CA there, unreadable files, an issuing certificate that
            does not match ``public_key``, or one the root did not sign.
    """
    certificate = _read_certificate(directory / "ca.crt")
    if public_key is not None and certificate.public_key() != public_key:
        raise ConfigurationError(
            f"local CA: {directory / 'ca.crt'} does not match {directory / 'ca.key'}"
        )
    root_path = directory / "root.crt"
    if not root_path.exists():
        return (certificate,)  # A one-tier CA of an earlier version.
    root = _read_certificate(root_path)
    try:
        certificate.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigurationError(
            f"local CA: {directory / 'ca.crt'} is not signed by {root_path}"
        ) from exc
    return (certificate, root)


def write_new_private(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600) with ``data``; refuse to replace an existing file.

    Raises:
        ConfigurationError: it exists, or cannot be written.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(f"{path}: exists already; not replacing it") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot create it: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ConfigurationError(f"{path}: cannot write it: {exc.strerror}") from exc


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the exclusive lock on ``<directory>/.lock`` that serializes creating a CA."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # Closing releases the lock.


def issuing_name(organization: str, now: datetime) -> x509.Name:
    """The name of a new issuing intermediate: the organization and the time it was made."""
    # Each intermediate gets a name of its own, so that two of them (during a rotation)
    # are told apart by every tool, not by their key identifiers only.
    return ca_name(organization, f"issuing CA {now:%Y-%m-%d %H:%M:%S}")


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"local CA: cannot read {path}") from exc
